//go:build js && wasm

package jsx

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/hack-pad/safejs"
)

// Request is one fetch call.
type Request struct {
	// Method is the HTTP method; empty means GET.
	Method string

	// URL is absolute or relative to the page.
	URL string

	// Header holds request headers. The browser adds and forbids some (Cookie, Host, ...).
	Header map[string]string

	// Body is sent as is when non-nil.
	Body []byte

	// JSBody, when it is a JavaScript object (a FormData, a Blob), is sent instead of
	// Body; the browser then sets the Content-Type (for FormData, with its boundary).
	JSBody safejs.Value

	// Credentials is fetch's credentials mode: "" means "same-origin" (cookies go to the
	// page's own origin only); "omit" sends none, for calls that carry their credential in
	// a header (direct mode); "include" also sends them to another origin that allows it
	// by CORS (a voxgate server on a sibling origin, see the server's CORS_ORIGINS).
	Credentials string
}

// FetchError is a fetch that got no HTTP answer: a network failure, a CORS refusal, or
// an abort because the context ended (then it wraps the context's error).
type FetchError struct {
	// Method and URL identify the request.
	Method, URL string

	// Err is the context's error or the *JSError fetch rejected with.
	Err error
}

// Error describes the failed request.
func (e *FetchError) Error() string {
	return fmt.Sprintf("jsx: fetch %s %s: %v", e.Method, e.URL, e.Err)
}

// Unwrap returns the cause.
func (e *FetchError) Unwrap() error { return e.Err }

// Response is the head of a fetch answer. Its body must be consumed with Bytes or Body,
// or discarded with Close; until then the request stays tied to its context.
type Response struct {
	// Status is the HTTP status code.
	Status int

	raw     safejs.Value // the JavaScript Response
	headers safejs.Value
	method  string
	url     string
	ctx     context.Context
	abort   func()

	once   sync.Once
	detach func() bool // unhooks ctx from the AbortController
}

// Fetch sends req with the browser's fetch and waits for the response head. Cookies are
// sent as req.Credentials says (by default to the same origin only) and the HTTP cache is
// bypassed. When ctx ends, the request, or the body being read, is aborted.
func Fetch(ctx context.Context, req Request) (*Response, error) {
	method := req.Method
	if method == "" {
		method = "GET"
	}
	fail := func(err error) (*Response, error) {
		return nil, &FetchError{Method: method, URL: req.URL, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}

	abortCtor, err := safejs.Global().Get("AbortController")
	if err != nil {
		return fail(err)
	}
	controller, err := abortCtor.New()
	if err != nil {
		return fail(err)
	}
	signal, err := controller.Get("signal")
	if err != nil {
		return fail(err)
	}

	headers := make(map[string]any, len(req.Header))
	for k, v := range req.Header {
		headers[k] = v
	}
	credentials := req.Credentials
	if credentials == "" {
		credentials = "same-origin"
	}
	init := map[string]any{
		"method":      method,
		"headers":     headers,
		"credentials": credentials,
		"cache":       "no-store",
		"signal":      signal,
	}
	if req.JSBody.Type() == safejs.TypeObject {
		init["body"] = req.JSBody
	} else if req.Body != nil {
		body, err := Uint8Array(req.Body)
		if err != nil {
			return fail(err)
		}
		init["body"] = body
	}

	abort := func() { _, _ = controller.Call("abort") }
	detach := context.AfterFunc(ctx, abort)
	promise, err := safejs.Global().Call("fetch", req.URL, init)
	if err != nil {
		detach()
		return fail(err)
	}
	raw, err := Await(ctx, promise)
	if err != nil {
		detach()
		if cerr := ctx.Err(); cerr != nil {
			return fail(cerr)
		}
		return fail(err)
	}

	status, err := getInt(raw, "status")
	if err != nil {
		detach()
		return fail(err)
	}
	hdrs, err := raw.Get("headers")
	if err != nil {
		detach()
		return fail(err)
	}
	return &Response{Status: status, raw: raw, headers: hdrs, method: method, url: req.URL,
		ctx: ctx, abort: abort, detach: detach}, nil
}

// Header returns the first value of the named response header, "" when absent. Only
// headers CORS exposes are visible, which for same-origin calls means all but Set-Cookie.
func (r *Response) Header(name string) string {
	v, err := r.headers.Call("get", name)
	if err != nil || v.Type() != safejs.TypeString {
		return ""
	}
	s, _ := v.String()
	return s
}

// Bytes reads the whole body.
func (r *Response) Bytes() ([]byte, error) {
	defer r.finish()

	promise, err := r.raw.Call("arrayBuffer")
	if err != nil {
		return nil, r.wrap(err)
	}
	buf, err := Await(r.ctx, promise)
	if err != nil {
		return nil, r.wrap(err)
	}
	b, err := Bytes(buf)
	if err != nil {
		return nil, r.wrap(err)
	}
	return b, nil
}

// Body returns a reader that streams the body chunk by chunk as the network delivers it.
// Close it when done.
func (r *Response) Body() (io.ReadCloser, error) {
	body, err := r.raw.Get("body")
	if err != nil {
		r.finish()
		return nil, r.wrap(err)
	}
	if body.IsNull() || body.IsUndefined() {
		// No stream (an empty body, or an old browser): serve the whole body at once.
		b, err := r.Bytes()
		if err != nil {
			return nil, err
		}
		return &bodyReader{resp: r, pending: b, eof: true}, nil
	}
	reader, err := body.Call("getReader")
	if err != nil {
		r.finish()
		return nil, r.wrap(err)
	}
	return &bodyReader{resp: r, reader: reader}, nil
}

// Close discards an unread body, aborting its transfer, and unties the request from its
// context. It is safe to call more than once and after Bytes.
func (r *Response) Close() {
	r.once.Do(func() {
		r.detach()
		r.abort()
	})
}

// finish unties a fully read response from its context.
func (r *Response) finish() {
	r.once.Do(func() { r.detach() })
}

// wrap attaches the request to err and prefers the context's error when it ended.
func (r *Response) wrap(err error) error {
	if cerr := r.ctx.Err(); cerr != nil {
		err = cerr
	}
	return &FetchError{Method: r.method, URL: r.url, Err: fmt.Errorf("read body: %w", err)}
}

// bodyReader reads a ReadableStream through its default reader.
type bodyReader struct {
	resp    *Response
	reader  safejs.Value // zero when the body was read at once
	pending []byte
	eof     bool
	closed  bool
}

func (b *bodyReader) Read(p []byte) (int, error) {
	for len(b.pending) == 0 {
		if b.eof || b.closed {
			return 0, io.EOF
		}
		if err := b.next(); err != nil {
			return 0, err
		}
	}
	n := copy(p, b.pending)
	b.pending = b.pending[n:]
	return n, nil
}

// next waits for the stream's next chunk.
func (b *bodyReader) next() error {
	promise, err := b.reader.Call("read")
	if err != nil {
		return b.resp.wrap(err)
	}
	res, err := Await(b.resp.ctx, promise)
	if err != nil {
		return b.resp.wrap(err)
	}
	done, err := res.Get("done")
	if err != nil {
		return b.resp.wrap(err)
	}
	if isDone, _ := done.Bool(); isDone {
		b.eof = true
		b.resp.finish()
		return nil
	}
	value, err := res.Get("value")
	if err != nil {
		return b.resp.wrap(err)
	}
	if b.pending, err = Bytes(value); err != nil {
		return b.resp.wrap(err)
	}
	return nil
}

// Close stops reading; an unfinished transfer is aborted.
func (b *bodyReader) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	if !b.eof {
		b.resp.Close()
		return nil
	}
	b.resp.finish()
	return nil
}

// getInt reads an integer property.
func getInt(v safejs.Value, prop string) (int, error) {
	p, err := v.Get(prop)
	if err != nil {
		return 0, err
	}
	if p.Type() != safejs.TypeNumber {
		return 0, errors.New("jsx: property " + prop + " is not a number")
	}
	return p.Int()
}
