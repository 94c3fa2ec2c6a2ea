//go:build js && wasm

package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/internal/leak"
	"github.com/voxgate/voxgate/wasm/jsx"
)

// Socket limits. Each says why it has its value.
const (
	// dialTimeout bounds one WebSocket open. The proxy checks the upgrade and dials
	// Cartesia before answering, so an open takes two round trips; 20 s covers a slow
	// network without leaving a caller waiting forever.
	dialTimeout = 20 * time.Second

	// readLimit bounds one received message. Cartesia's largest frames are audio chunks
	// of about 100 ms as base64 in JSON (some 26 KiB at 48 kHz float32) and agent media of
	// similar size; 4 MiB leaves ample room. The browser has buffered the message before
	// the check, so the limit guards Go's memory, not the network: a longer message is
	// dropped (jsx.WebSocket skips copying it when its length shows it) and the socket is
	// closed with closeTooBig.
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
	closeNormal = 1000
	closeTooBig = 4009 // our 4xxx twin of 1009, which browsers refuse to send
	closeEcho   = 4011 // our 4xxx twin of 1011: the upstream sent what must not be passed on
	closeNoCode = 1005 // no status code was received
)

// closeReasonWithheld replaces a direct socket's close reason that holds part of its token.
const closeReasonWithheld = "upstream close reason withheld"

// errEcho ends a direct socket whose upstream repeated the token in a message.
var errEcho = errors.New("the upstream repeated the token")

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
// queues messages (in jsx.WebSocket's queue) even when Go stops reading. Only a consumer
// that reads from the network (SSE, via fetch's stream reader) slows the sender down.
type socket struct {
	conn  *jsx.WebSocket
	grant string
	// forms and needles are the forms of the token a direct socket was dialled with (see
	// package leak), nil through the proxy (which checks for itself): a message holding
	// one ends the socket, a close reason holding a piece of one is withheld. They are
	// made once, so the per-message check allocates nothing.
	forms   []string
	needles [][]byte
	inbox   chan message
	watch   func(message) // sees every message before the inbox, in the reader goroutine

	ended   chan struct{} // closed once status and readErr are final
	status  CloseStatus
	readErr error // a failure other than the close itself

	closing  atomic.Bool
	mu       sync.Mutex
	sent     *CloseStatus  // the close this client sent first; guarded by mu
	finished bool          // status is being decided: a later Close changes nothing; mu
	detached chan struct{} // closed when nobody will read the inbox again
	detach   sync.Once
	close    sync.Once
}

// dial opens a WebSocket to the server's path (with query, may be empty), or for a direct
// grant to the same path on the upstream with the token in the query. It checks grant's
// token first; when the open fails (browsers do not say why) it invalidates the token,
// refreshes it and tries once more, then fails with code ws_refused.
func (c *Client) dial(ctx context.Context, grant, path, query string,
	watch func(message)) (*socket, error) {
	proxied, err := c.wsURL(path, query)
	if err != nil {
		return nil, err
	}

	for attempt := 1; ; attempt++ {
		secret, err := c.ensure(ctx, grant)
		if err != nil {
			return nil, AsError(err, grant)
		}
		url, where := proxied, "the server"
		if secret != "" {
			url, where = c.directSocketURL(path, query, secret), "the upstream"
		}

		dctx, cancel := context.WithTimeout(ctx, dialTimeout)
		conn, err := jsx.Dial(dctx, url) // closes a socket still opening when dctx ends
		cancel()
		url = "" // a direct URL carries the token: do not keep it reachable longer than needed
		if err != nil && secret != "" {
			// The error's text leaves the query out, but its URL field keeps the token.
			err = errors.New(err.Error())
		}
		if err == nil {
			c.sessionStarted()
			return newSocket(conn, grant, secret, watch), nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, &Error{Code: CodeAborted, Message: "open " + path + ": " + cerr.Error(),
				Grant: grant, Err: err}
		}
		if attempt == 2 {
			return nil, &Error{Code: CodeWSRefused, Grant: grant, Err: err,
				Message: "open " + path + ": " + where + " refused the WebSocket " +
					"(the browser console may say why)"}
		}
		c.tokens.Invalidate(grant)
	}
}

// wsURL is the WebSocket URL of path on the server: the configured base or the page's
// origin; jsx.Dial turns http(s) into ws(s).
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

func newSocket(conn *jsx.WebSocket, grant, secret string, watch func(message)) *socket {
	conn.SetReadLimit(readLimit)
	forms := leak.Forms(secret)
	s := &socket{conn: conn, grant: grant, forms: forms, needles: leak.Needles(forms),
		inbox: make(chan message, inboxSize), watch: watch, ended: make(chan struct{}),
		detached: make(chan struct{})}
	go s.read()
	return s
}

// read moves messages into the inbox until the socket ends. It reads with a context that
// never ends: Read returns once the browser reports the close, which it always does.
func (s *socket) read() {
	defer close(s.inbox)
	for {
		binary, data, err := s.conn.Read(context.Background())
		if err != nil {
			s.finish(err)
			return
		}
		if leak.In(data, s.needles) {
			s.finish(errEcho)
			return
		}
		m := message{binary: binary, data: data}
		if s.watch != nil {
			s.watch(m)
		}
		select {
		case s.inbox <- m:
		case <-s.detached:
		}
	}
}

// finish records how the socket ended. err is the first Read error: the close itself, a
// message over readLimit, or a message that could not be copied; after the last two the
// socket is closed and the rest is dropped until the browser reports the close.
func (s *socket) finish(err error) {
	var tooBig *jsx.TooBigError
	var closed *jsx.CloseError
	switch {
	case errors.As(err, &closed):
	case errors.Is(err, errEcho):
		s.readErr = echoError(s.grant)
		s.Close(closeEcho, "token echo withheld")
	case errors.As(err, &tooBig):
		s.readErr = &Error{Code: CodeBadEvent, Grant: s.grant, Err: err,
			Message: fmt.Sprintf("a message exceeded %d bytes", readLimit)}
		s.Close(closeTooBig, "message too big")
	default:
		s.readErr = AsError(err, s.grant)
		s.Close(closeNormal, "unreadable message")
	}
	for closed == nil {
		_, _, err = s.conn.Read(context.Background())
		errors.As(err, &closed)
	}

	s.mu.Lock()
	s.finished = true
	sent := s.sent
	s.mu.Unlock()
	// A close this client started is reported as sent, whatever the server answers: the
	// caller asked for that ending.
	if sent != nil {
		s.status = *sent
	} else {
		s.status = CloseStatus{Code: closed.Code, Reason: scrubReason(closed.Reason, s.forms)}
	}
	s.forms, s.needles = nil, nil // nothing here needs the token any more
	close(s.ended)
}

// scrubReason removes every form of the token from a close reason, and withholds a
// reason that still shares a run of leak.Run bytes with one.
func scrubReason(reason string, forms []string) string {
	if reason = scrub(reason, forms); leak.SharesRun(reason, forms...) {
		return closeReasonWithheld
	}
	return reason
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
	if err := s.conn.Write(binary, data); err != nil {
		return &Error{Code: CodeClosed, Grant: s.grant, Message: err.Error(), Err: err}
	}
	return nil
}

// Close starts the close handshake with code (1000 or 3000-4999: the only codes browsers
// send) without waiting for it; Closed reports the end. Safe to call more than once, and
// from a JavaScript callback (it never waits).
func (s *socket) Close(code int, reason string) {
	s.close.Do(func() {
		s.closing.Store(true)
		s.mu.Lock()
		if !s.finished {
			s.sent = &CloseStatus{Code: code, Reason: jsx.ClampCloseReason(reason)}
		}
		s.mu.Unlock()
		// The codes used here are constants browsers accept; the only other failure is a
		// socket already closing, whose end Closed reports anyway.
		_ = s.conn.Close(code, reason)
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
