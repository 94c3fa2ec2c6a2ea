package sectest

import (
	"io"
	"net/http"
	"sync"
)

// maxRecordedResponse bounds what is kept of one response body; the leak checks need
// the text, not megabytes of audio.
const maxRecordedResponse = 8 << 20

// Response is one answer the test received from the server under test: the request's
// method and path, the status, the headers and the body as far as the test read it.
type Response struct {
	Method string
	Path   string
	Status int
	Header http.Header
	Body   []byte
}

// Recorder keeps every response its clients receive, for the leak checks. WebSocket
// messages and raw-socket answers are added with Note. It is safe for concurrent use.
//
// Limitation: only what a test reads of a body is recorded (reading ahead would break
// streaming tests), so a leak in bytes nobody read goes unseen; tests read bodies to
// the end.
type Recorder struct {
	mu    sync.Mutex
	resps []*Response
}

// Client returns a client that records through r: no cookie jar (tests pass cookies by
// hand), no redirects followed, no proxy, no transparent decompression. It also works
// as coder/websocket's DialOptions.HTTPClient: a 101's headers are recorded and its
// connection is left alone.
func (r *Recorder) Client() *http.Client {
	return &http.Client{
		Transport: r.Wrap(&http.Transport{DisableCompression: true, Proxy: nil}),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// Wrap returns a RoundTripper that sends through next and records every response.
func (r *Recorder) Wrap(next http.RoundTripper) http.RoundTripper {
	return roundTripper{r: r, next: next}
}

type roundTripper struct {
	r    *Recorder
	next http.RoundTripper
}

// RoundTrip implements http.RoundTripper.
func (rt roundTripper) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := rt.next.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	rec := rt.r.add(req.Method, req.URL.Path, resp.StatusCode, resp.Header.Clone(), nil)
	if resp.StatusCode != http.StatusSwitchingProtocols && resp.Body != nil {
		// A 101's body is the upgraded connection, which WebSocket clients need as is.
		resp.Body = &teeBody{ReadCloser: resp.Body, r: rt.r, rec: rec}
	}
	return resp, nil
}

// Unwrap returns the transport underneath, so that FakeCartesia.Trust can reach it.
func (rt roundTripper) Unwrap() http.RoundTripper { return rt.next }

// Note records something the test received outside a recording client: a raw-socket
// answer, a WebSocket message or close reason.
func (r *Recorder) Note(method, path string, status int, header http.Header, body []byte) {
	r.add(method, path, status, header.Clone(), append([]byte(nil), body...))
}

func (r *Recorder) add(method, path string, status int, h http.Header, body []byte) *Response {
	rec := &Response{Method: method, Path: path, Status: status, Header: h, Body: body}
	r.mu.Lock()
	r.resps = append(r.resps, rec)
	r.mu.Unlock()
	return rec
}

// Responses returns copies of everything recorded so far.
func (r *Recorder) Responses() []Response {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Response, len(r.resps))
	for i, rec := range r.resps {
		out[i] = *rec
		out[i].Body = append([]byte(nil), rec.Body...)
	}
	return out
}

// teeBody records a response body as it is read.
type teeBody struct {
	io.ReadCloser
	r   *Recorder
	rec *Response
}

// Read implements io.Reader.
func (b *teeBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.r.mu.Lock()
		if room := maxRecordedResponse - len(b.rec.Body); room > 0 {
			b.rec.Body = append(b.rec.Body, p[:min(n, room)]...)
		}
		b.r.mu.Unlock()
	}
	return n, err
}
