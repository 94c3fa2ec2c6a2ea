//go:build js && wasm

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/coder/websocket"
	"github.com/hack-pad/safejs"
)

// Socket limits. Each says why it has its value.
const (
	// dialTimeout bounds one WebSocket open. The proxy checks the upgrade and dials
	// Cartesia before answering, so an open takes two round trips; 20 s covers a slow
	// network without leaving a caller waiting forever.
	dialTimeout = 20 * time.Second

	// readLimit bounds one received message. Cartesia's largest frames are audio chunks
	// of about 100 ms as base64 in JSON (some 26 KiB at 48 kHz float32) and agent media of
	// similar size; 4 MiB leaves ample room. coder/websocket's 32 KiB default is too
	// tight. The browser has buffered the message before the check, so the limit guards
	// Go's memory, not the network.
	readLimit = 4 << 20

	// inboxSize is how many received messages wait for the consumer before the reader
	// stops reading (see socket).
	inboxSize = 32

	// closeWait bounds how long a graceful close (STT "close", turns close) waits for the
	// server to finish before the client closes the socket itself.
	closeWait = 10 * time.Second
)

// Close codes browsers let a page send (WebSocket.close accepts only 1000 and 3000-4999).
const (
	closeNormal  = 1000
	closeTooBig  = 4009 // our 4xxx twin of 1009, which browsers refuse to send
	closeNoCode  = 1005 // no status code was received
	closeAbnorml = 1006 // the connection dropped without a close frame
)

// CloseStatus is how a WebSocket ended: the close code and reason, as received from the
// server, or as sent when the client closed first. 1006 means the connection was lost.
type CloseStatus struct {
	Code   int
	Reason string
}

// message is one received WebSocket message.
type message struct {
	binary bool
	data   []byte
}

// socket is one WebSocket through the server's proxy: a reader goroutine moves messages
// into a bounded inbox; when the consumer does not read, the reader stops reading.
//
// Limitation: the browser's WebSocket offers no read backpressure: it keeps receiving and
// queues messages (inside coder/websocket) even when Go stops reading. Only a consumer
// that reads from the network (SSE, via fetch's stream reader) slows the sender down.
type socket struct {
	conn  *websocket.Conn // referenced until the end: a collected Conn closes itself
	grant string
	inbox chan message
	watch func(message) // sees every message before the inbox, in the reader goroutine

	ended   chan struct{} // closed once status and readErr are final
	status  CloseStatus
	readErr error // a failure other than the close itself

	closing  atomic.Bool
	detached chan struct{} // closed when nobody will read the inbox again
	detach   sync.Once
	close    sync.Once
}

// dial opens a WebSocket to the server's path (with query, may be empty). It checks
// grant's token first; when the open fails (browsers do not say why) it invalidates the
// token, refreshes it and tries once more, then fails with code ws_refused.
func (c *Client) dial(ctx context.Context, grant, path, query string,
	watch func(message)) (*socket, error) {
	url, err := c.wsURL(path, query)
	if err != nil {
		return nil, err
	}

	for attempt := 1; ; attempt++ {
		if _, err := c.tokens.Ensure(ctx, grant); err != nil {
			return nil, AsError(err, grant)
		}

		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		// Limitation: when dctx ends during the open, coder/websocket closes the socket
		// with 1008, which browsers refuse; a socket that opens later stays open unused
		// until the page unloads.
		conn, _, err := websocket.Dial(dctx, url, nil)
		cancel()
		if err == nil {
			c.sessionStarted()
			return newSocket(conn, grant, watch), nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, &Error{Code: CodeAborted, Message: "open " + path + ": " + cerr.Error(),
				Grant: grant, Err: err}
		}
		if attempt == 2 {
			return nil, &Error{Code: CodeWSRefused, Grant: grant, Err: err,
				Message: "open " + path + ": the server refused the WebSocket " +
					"(the browser console may say why)"}
		}
		c.tokens.Invalidate(grant)
	}
}

// wsURL is the WebSocket URL of path on the server: the configured base or the page's
// origin; coder/websocket turns http(s) into ws(s).
func (c *Client) wsURL(path, query string) (string, error) {
	base := c.base
	if base == "" {
		loc, err := safejs.Global().Get("location")
		if err == nil {
			var origin safejs.Value
			if origin, err = loc.Get("origin"); err == nil {
				base, err = origin.String()
			}
		}
		if err != nil || !strings.HasPrefix(base, "http") {
			return "", &Error{Code: CodeInvalidRequest,
				Message: "no page origin to derive the WebSocket URL from; set baseURL"}
		}
	}
	if query != "" {
		path += "?" + query
	}
	return base + path, nil
}

func newSocket(conn *websocket.Conn, grant string, watch func(message)) *socket {
	conn.SetReadLimit(readLimit)
	s := &socket{conn: conn, grant: grant, inbox: make(chan message, inboxSize),
		watch: watch, ended: make(chan struct{}), detached: make(chan struct{})}
	go s.read()
	return s
}

// read moves messages into the inbox until the socket ends. It reads with a context that
// never ends: coder/websocket answers an ended read context with close code 1008, which
// browsers refuse, leaving the socket open. Reads end when the socket closes.
func (s *socket) read() {
	defer close(s.inbox)
	for {
		typ, data, err := s.conn.Read(context.Background())
		if err != nil {
			s.finish(err)
			return
		}
		m := message{binary: typ == websocket.MessageBinary, data: data}
		if s.watch != nil {
			s.watch(m)
		}
		select {
		case s.inbox <- m:
		case <-s.detached:
		}
	}
}

// finish records how the socket ended.
func (s *socket) finish(err error) {
	if errors.Is(err, websocket.ErrMessageTooBig) {
		s.readErr = &Error{Code: CodeBadEvent, Grant: s.grant, Err: err,
			Message: fmt.Sprintf("a message exceeded %d bytes", readLimit)}
		s.Close(closeTooBig, "message too big")
		for err == nil || errors.Is(err, websocket.ErrMessageTooBig) {
			_, _, err = s.conn.Read(context.Background()) // drop the rest until the close
		}
	} else if !errors.Is(err, net.ErrClosed) {
		s.readErr = AsError(err, s.grant)
	}
	s.status = closeStatus(s.conn)
	close(s.ended)
}

// next returns the next message. When the socket has ended it returns io.EOF after a
// normal close (1000, or no code) and an *Error otherwise.
func (s *socket) next(ctx context.Context) (message, error) {
	select {
	case m, ok := <-s.inbox:
		if ok {
			return m, nil
		}
		return message{}, s.endError()
	case <-ctx.Done():
		return message{}, AsError(ctx.Err(), s.grant)
	}
}

// endError is what a stream on the socket ends with once the socket has ended.
func (s *socket) endError() error {
	<-s.ended
	if s.readErr != nil {
		return s.readErr
	}
	if s.status.Code == closeNormal || s.status.Code == closeNoCode || s.closing.Load() {
		return io.EOF
	}
	return &Error{Code: CodeWSClosed, Grant: s.grant,
		Message: fmt.Sprintf("the WebSocket closed with %d %q", s.status.Code, s.status.Reason)}
}

// send writes one message. The browser's WebSocket.send never blocks: the message is
// queued by the browser when this returns.
func (s *socket) send(binary bool, data []byte) error {
	if s.closing.Load() {
		return &Error{Code: CodeClosed, Grant: s.grant, Message: "the WebSocket is closing"}
	}
	select {
	case <-s.ended:
		return &Error{Code: CodeClosed, Grant: s.grant, Message: "the WebSocket is closed"}
	default:
	}
	typ := websocket.MessageText
	if binary {
		typ = websocket.MessageBinary
	}
	if err := s.conn.Write(context.Background(), typ, data); err != nil {
		return &Error{Code: CodeClosed, Grant: s.grant, Message: err.Error(), Err: err}
	}
	return nil
}

// Close starts the close handshake with code (1000 or 3000-4999: the only codes browsers
// send) without waiting for it; Closed reports the end. Safe to call more than once.
//
// Limitation: coder/websocket holds a lock while it waits for the close event, and its
// error-event callback takes the same lock; a connection that fails (error event) during
// our close handshake could block that callback. Browsers fire error events on failed
// opens and lost connections, rarely during a clean close; no case was seen in tests.
func (s *socket) Close(code int, reason string) {
	s.close.Do(func() {
		s.closing.Store(true)
		// Conn.Close waits for the browser's close event: never on a callback's goroutine.
		go func() { _ = s.conn.Close(websocket.StatusCode(code), reason) }()
	})
}

// release tells the socket that nobody reads its messages any more; the reader then drops
// them instead of waiting.
func (s *socket) release() {
	s.detach.Do(func() { close(s.detached) })
}

// Closed waits until the socket has ended and returns how.
func (s *socket) Closed(ctx context.Context) (CloseStatus, error) {
	select {
	case <-s.ended:
		return s.status, nil
	case <-ctx.Done():
		return CloseStatus{}, AsError(ctx.Err(), s.grant)
	}
}

// closeStatus reads the close code and reason that ended conn.
//
// Limitation: coder/websocket v1.8.15 under js/wasm returns net.ErrClosed from Read and
// keeps the peer's CloseError in an unexported field (coder/websocket#505, open). Until
// that is fixed, closeStatus reads the field through reflect; when the field is missing
// (another version) the status is reported as 1005, "no status".
func closeStatus(conn *websocket.Conn) CloseStatus {
	field := reflect.ValueOf(conn).Elem().FieldByName("closeErr")
	if !field.IsValid() || field.Type() != reflect.TypeFor[error]() {
		return CloseStatus{Code: closeNoCode}
	}
	err := *(*error)(unsafe.Pointer(field.UnsafeAddr()))
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return CloseStatus{Code: int(ce.Code), Reason: ce.Reason}
	}
	return CloseStatus{Code: closeAbnorml}
}
