//go:build js && wasm

package jsx

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hack-pad/safejs"
)

// wsOpen is the readyState of an open browser WebSocket.
const wsOpen = 1

// MaxCloseReason is the longest close reason, in UTF-8 bytes, that browsers accept: a
// close frame's payload is at most 125 bytes and the code takes two of them (RFC 6455,
// section 5.5).
const MaxCloseReason = 123

// ErrNotOpen is returned by Write when the WebSocket is closing or closed: browsers
// silently drop what is sent then, so the caller is told instead.
var ErrNotOpen = errors.New("jsx: the WebSocket is not open")

// DialError is a WebSocket that did not open: the browser refused the URL, reported an
// error or a close before the open, or the context ended first (then it wraps the
// context's error).
type DialError struct {
	// URL is the address dialled. Error prints it without its query, which may carry a
	// credential (an access_token).
	URL string

	// Err is the context's error, a *JSError, or the *CloseError the browser reported.
	Err error
}

// Error describes the failed open.
func (e *DialError) Error() string {
	return fmt.Sprintf("jsx: open WebSocket %s: %v", withoutQuery(e.URL), e.Err)
}

// Unwrap returns the cause.
func (e *DialError) Unwrap() error { return e.Err }

// CloseError is how an open WebSocket ended, as the browser's CloseEvent says: Read
// returns it once every message received before the close has been read.
type CloseError struct {
	// Code is the close code: the peer's, 1005 when its close frame had none, 1006 when
	// the connection was lost without a close frame.
	Code int

	// Reason is the peer's close reason.
	Reason string

	// WasClean reports whether the closing handshake completed.
	WasClean bool
}

// Error returns "jsx: WebSocket closed with code reason".
func (e *CloseError) Error() string {
	clean := ""
	if !e.WasClean {
		clean = " (not clean)"
	}
	return fmt.Sprintf("jsx: WebSocket closed with %d %q%s", e.Code, e.Reason, clean)
}

// TooBigError is a received message longer than the read limit. It was dropped without
// being copied into Go; the socket stays open and the next Read returns the next message.
type TooBigError struct {
	// Size is the message's length in bytes; for a text message that was not copied, the
	// number of UTF-16 code units, which its UTF-8 length is at least.
	Size int

	// Limit is the read limit in force.
	Limit int

	// Binary tells a binary message from a text one.
	Binary bool
}

// Error returns "jsx: WebSocket message of n bytes exceeds the limit".
func (e *TooBigError) Error() string {
	return fmt.Sprintf("jsx: WebSocket message of %d bytes exceeds the %d-byte limit",
		e.Size, e.Limit)
}

// received is one message as the browser delivered it, not yet copied into Go: copying
// happens in Read, on the reader's goroutine, so the event callback stays short.
type received struct {
	binary bool
	data   safejs.Value // a string, or an ArrayBuffer (binaryType "arraybuffer")
}

// WebSocket is a browser WebSocket opened by Dial. Received messages wait in an unbounded
// queue (browsers offer no read backpressure, so bounding it here would only lose
// messages) until Read takes them. Its JavaScript callbacks are released when the close
// event arrives; a socket that is never closed keeps them, so always Close what Dial
// returns.
type WebSocket struct {
	ws safejs.Value

	mu     sync.Mutex
	queue  []received
	limit  int
	closed *CloseError // set once, before done is closed

	avail chan struct{} // holds a token while queue may be non-empty
	done  chan struct{} // closed by the close event

	onOpen, onError, onMessage, onClose *Func
	release                             sync.Once
}

// Dial opens a WebSocket to url and waits until it is open, the browser reports a failure
// (browsers never say why an open failed), or ctx ends, in which case the half-open socket
// is closed. http and https URLs are dialled as ws and wss. Binary messages arrive as
// ArrayBuffers; every failure is a *DialError.
func Dial(ctx context.Context, url string) (*WebSocket, error) {
	fail := func(err error) (*WebSocket, error) {
		return nil, &DialError{URL: url, Err: err}
	}
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	url = wsScheme(url)

	ctor, err := safejs.Global().Get("WebSocket")
	if err != nil {
		return fail(err)
	}
	if ctor.Type() != safejs.TypeFunction {
		return fail(errors.New("this JavaScript environment has no WebSocket"))
	}
	ws, err := ctor.New(url)
	if err != nil {
		// The constructor throws only a SyntaxError for a malformed URL, and its message
		// quotes the URL, query and all: the error is described without it.
		return fail(errors.New("the browser refused the URL"))
	}
	if err := ws.Set("binaryType", "arraybuffer"); err != nil {
		_, _ = ws.Call("close")
		return fail(err)
	}

	w := &WebSocket{ws: ws, avail: make(chan struct{}, 1), done: make(chan struct{})}
	opened := make(chan struct{})
	failed := make(chan struct{})
	var openOnce, failOnce sync.Once
	if err := w.listen(func() { openOnce.Do(func() { close(opened) }) },
		func() { failOnce.Do(func() { close(failed) }) }); err != nil {
		w.releaseAll()
		_, _ = ws.Call("close")
		return fail(err)
	}

	select {
	case <-opened:
	case <-failed:
	case <-w.done:
	case <-ctx.Done():
	}
	// An open followed at once by a close still counts as opened: Read reports the close.
	select {
	case <-opened:
		w.releaseOpenCallbacks()
		return w, nil
	default:
	}

	// Closing a socket that is still connecting fails it without a close frame and
	// without an exception; the handlers go first, so no later event reaches Go.
	w.releaseAll()
	_, _ = ws.Call("close")
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if ce := w.closeErr(); ce != nil {
		return fail(ce)
	}
	return fail(errors.New("the browser reported an error before the open"))
}

// listen installs the four event handlers; opened and failed are called from the open and
// error events.
func (w *WebSocket) listen(opened, failed func()) error {
	var err error
	if w.onOpen, err = FuncOf(func(safejs.Value, []safejs.Value) any {
		opened()
		return nil
	}); err != nil {
		return err
	}
	if w.onError, err = FuncOf(func(safejs.Value, []safejs.Value) any {
		failed()
		return nil
	}); err != nil {
		return err
	}
	if w.onMessage, err = FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		w.push(first(args))
		return nil
	}); err != nil {
		return err
	}
	if w.onClose, err = FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		w.end(first(args))
		return nil
	}); err != nil {
		return err
	}

	for name, f := range map[string]*Func{"onopen": w.onOpen, "onerror": w.onError,
		"onmessage": w.onMessage, "onclose": w.onClose} {
		if err := w.ws.Set(name, f.Value()); err != nil {
			return fmt.Errorf("jsx: set %s: %w", name, err)
		}
	}
	return nil
}

// push queues a message event's data. It runs on the event loop: it only appends.
func (w *WebSocket) push(event safejs.Value) {
	data, err := event.Get("data")
	if err != nil {
		return // not a MessageEvent; nothing to deliver
	}
	w.mu.Lock()
	w.queue = append(w.queue, received{binary: data.Type() != safejs.TypeString, data: data})
	w.mu.Unlock()
	w.signal()
}

// end records the close event and releases every callback: the close event is the last
// event a WebSocket fires.
func (w *WebSocket) end(event safejs.Value) {
	ce := &CloseError{Code: 1006}
	if code, err := getInt(event, "code"); err == nil {
		ce.Code = code
	}
	ce.Reason, _ = getString(event, "reason")
	if clean, err := event.Get("wasClean"); err == nil {
		ce.WasClean, _ = clean.Truthy()
	}

	w.mu.Lock()
	if w.closed == nil {
		w.closed = ce
		close(w.done)
	}
	w.mu.Unlock()
	w.releaseAll()
}

// releaseOpenCallbacks drops the open and error handlers once the socket is open: an
// error after the open is always followed by the close event, which says all there is.
func (w *WebSocket) releaseOpenCallbacks() {
	_ = w.ws.Set("onopen", nil)
	_ = w.ws.Set("onerror", nil)
	w.onOpen.Release()
	w.onError.Release()
}

// releaseAll unhooks and frees every callback. The handlers are unset before the functions
// are released, so an event already queued in the browser finds no handler instead of a
// released Go function (which Go answers with a "call to released function" console error).
func (w *WebSocket) releaseAll() {
	w.release.Do(func() {
		for _, name := range []string{"onopen", "onerror", "onmessage", "onclose"} {
			_ = w.ws.Set(name, nil)
		}
		for _, f := range []*Func{w.onOpen, w.onError, w.onMessage, w.onClose} {
			if f != nil {
				f.Release()
			}
		}
	})
}

// signal leaves a token in avail unless one is already there.
func (w *WebSocket) signal() {
	select {
	case w.avail <- struct{}{}:
	default:
	}
}

// closeErr returns how the socket ended, nil while it is open.
func (w *WebSocket) closeErr() *CloseError {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.closed
}

// SetReadLimit sets the longest message Read copies into Go, in bytes; 0 (the default)
// means no limit. A longer message is skipped and reported as a *TooBigError.
func (w *WebSocket) SetReadLimit(n int) {
	w.mu.Lock()
	w.limit = n
	w.mu.Unlock()
}

// Read returns the next message, waiting for one until ctx ends. Messages come in the
// order received; after the close event, once the queue is empty, Read returns the
// *CloseError. A message over the read limit comes back as a *TooBigError.
func (w *WebSocket) Read(ctx context.Context) (binary bool, data []byte, err error) {
	for {
		w.mu.Lock()
		if len(w.queue) > 0 {
			m := w.queue[0]
			w.queue[0] = received{} // let the JavaScript value go
			w.queue = w.queue[1:]
			more, limit := len(w.queue) > 0, w.limit
			w.mu.Unlock()
			if more {
				w.signal() // another reader may take the next one
			}
			data, err := copyMessage(m, limit)
			return m.binary, data, err
		}
		if w.closed != nil {
			ce := *w.closed
			w.mu.Unlock()
			return false, nil, &ce
		}
		w.mu.Unlock()

		select {
		case <-w.avail:
		case <-w.done:
		case <-ctx.Done():
			return false, nil, ctx.Err()
		}
	}
}

// copyMessage copies a received message into Go, unless it exceeds limit (0: none).
func copyMessage(m received, limit int) ([]byte, error) {
	if !m.binary {
		// A string's UTF-16 length is at most its UTF-8 length: a string already longer
		// than the limit is refused before it is copied.
		if n, err := m.data.Length(); err == nil && limit > 0 && n > limit {
			return nil, &TooBigError{Size: n, Limit: limit}
		}
		s, err := m.data.String()
		if err != nil {
			return nil, fmt.Errorf("jsx: read WebSocket text: %w", err)
		}
		if limit > 0 && len(s) > limit {
			return nil, &TooBigError{Size: len(s), Limit: limit}
		}
		return []byte(s), nil
	}

	if n, err := getInt(m.data, "byteLength"); err == nil && limit > 0 && n > limit {
		return nil, &TooBigError{Size: n, Limit: limit, Binary: true}
	}
	b, err := Bytes(m.data)
	if err != nil {
		return nil, fmt.Errorf("jsx: read WebSocket binary: %w", err)
	}
	return b, nil
}

// Write sends one message: data as text (invalid UTF-8 becomes U+FFFD on the way into
// JavaScript) or, when binary, as a copy in a Uint8Array. The browser queues it and Write
// returns at once; BufferedAmount tells how much is still queued. Writing to a socket
// that is not open returns ErrNotOpen.
func (w *WebSocket) Write(binary bool, data []byte) error {
	if state, err := getInt(w.ws, "readyState"); err != nil || state != wsOpen {
		return ErrNotOpen
	}
	var payload any = string(data)
	if binary {
		arr, err := Uint8Array(data)
		if err != nil {
			return fmt.Errorf("jsx: WebSocket send: %w", err)
		}
		payload = arr
	}
	if _, err := w.ws.Call("send", payload); err != nil {
		return fmt.Errorf("jsx: WebSocket send: %w", err)
	}
	return nil
}

// BufferedAmount returns how many bytes sent messages still wait in the browser's queue.
func (w *WebSocket) BufferedAmount() (int, error) {
	n, err := getInt(w.ws, "bufferedAmount")
	if err != nil {
		return 0, fmt.Errorf("jsx: WebSocket bufferedAmount: %w", err)
	}
	return n, nil
}

// Close starts the closing handshake with code and reason and returns without waiting;
// Read reports the end. Browsers send only 1000 and 3000-4999 and throw on anything else,
// so another code is refused here with an error and nothing is sent. A reason longer
// than MaxCloseReason UTF-8 bytes is cut at a character boundary. Closing a socket that
// is already closing or closed does nothing.
func (w *WebSocket) Close(code int, reason string) error {
	if code != 1000 && (code < 3000 || code > 4999) {
		return fmt.Errorf("jsx: close WebSocket with %d: browsers send only 1000 and "+
			"3000-4999", code)
	}
	if w.closeErr() != nil {
		return nil
	}
	if _, err := w.ws.Call("close", code, ClampCloseReason(reason)); err != nil {
		return fmt.Errorf("jsx: close WebSocket with %d: %w", code, err)
	}
	return nil
}

// Done is closed when the close event has arrived.
func (w *WebSocket) Done() <-chan struct{} { return w.done }

// ClampCloseReason returns reason as Close sends it: valid UTF-8 (invalid bytes become
// U+FFFD, as they would on the way into JavaScript) of at most MaxCloseReason bytes, cut
// at a character boundary.
func ClampCloseReason(reason string) string {
	reason = strings.ToValidUTF8(reason, "\uFFFD")
	if len(reason) <= MaxCloseReason {
		return reason
	}
	cut := MaxCloseReason
	for cut > 0 && !utf8.RuneStart(reason[cut]) {
		cut--
	}
	return reason[:cut]
}

// wsScheme turns an http(s) URL into its ws(s) twin; other URLs are left as they are.
func wsScheme(url string) string {
	switch {
	case strings.HasPrefix(url, "http://"):
		return "ws://" + strings.TrimPrefix(url, "http://")
	case strings.HasPrefix(url, "https://"):
		return "wss://" + strings.TrimPrefix(url, "https://")
	}
	return url
}

// withoutQuery drops a URL's query and fragment, which may carry credentials.
func withoutQuery(url string) string {
	if i := strings.IndexAny(url, "?#"); i >= 0 {
		return url[:i] + "?..."
	}
	return url
}
