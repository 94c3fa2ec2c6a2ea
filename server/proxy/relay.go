package proxy

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
	"golang.org/x/time/rate"
)

// closeMsg is what one leg of a relay is told when the relay ends.
type closeMsg struct {
	// code and reason go in the close frame; code 0 drops the leg without a close
	// handshake (it is dead or unresponsive).
	code   websocket.StatusCode
	reason string
	// done means the leg is already closed (its peer closed, or the library closed it
	// over a read limit) with code; nothing more is sent.
	done bool
}

// logCode is the code the leg ended with, 1006 when it was dropped.
func (m closeMsg) logCode() int {
	if m.code == 0 {
		return int(websocket.StatusAbnormalClosure)
	}
	return int(m.code)
}

// ending is how a relay ends: what each leg is told, and a note for the log. echo, when
// set, says where upstream echoed the token ("message", "close_reason"), for the
// token_echo_blocked event.
type ending struct {
	client, upstream closeMsg
	note             string
	echo             string
}

// Endings the proxy itself decides.
var (
	endSessionEnded = ending{
		client:   closeMsg{code: websocket.StatusPolicyViolation, reason: "session ended"},
		upstream: closeMsg{code: websocket.StatusNormalClosure, reason: "session ended"},
		note:     "session_ended",
	}
	// endSessionExpired tells both legs exactly what a sign-out does (the page reacts
	// to a session that ended, however it ended); only the log tells them apart.
	endSessionExpired = ending{
		client:   endSessionEnded.client,
		upstream: endSessionEnded.upstream,
		note:     "session_expired",
	}
	endIdle = ending{
		client:   closeMsg{code: websocket.StatusGoingAway, reason: "idle timeout"},
		upstream: closeMsg{code: websocket.StatusGoingAway, reason: "idle timeout"},
		note:     "idle_timeout",
	}
	endRateExceeded = ending{
		client:   closeMsg{code: websocket.StatusPolicyViolation, reason: "message rate exceeded"},
		upstream: closeMsg{code: websocket.StatusGoingAway, reason: "client went away"},
		note:     "client_rate_exceeded",
	}
	endUpstreamSilent = ending{
		client:   closeMsg{code: websocket.StatusInternalError, reason: "upstream not responding"},
		upstream: closeMsg{},
		note:     "upstream_ping_timeout",
	}
	endClientSilent = ending{
		client:   closeMsg{},
		upstream: closeMsg{code: websocket.StatusGoingAway, reason: "client went away"},
		note:     "client_ping_timeout",
	}
	// endTokenEcho: an upstream message carried the token. It is not relayed; the
	// browser learns only that the upstream failed, upstream learns why.
	endTokenEcho = ending{
		client: closeMsg{code: websocket.StatusInternalError,
			reason: "upstream message withheld"},
		upstream: closeMsg{code: websocket.StatusPolicyViolation, reason: "credential echoed"},
		note:     noteTokenEcho,
		echo:     "message",
	}
)

// Close codes across the relay. Each leg is told something its peer can act on and that
// a browser accepts; 1005, 1006 and 1015 are never sent (RFC 6455 7.4.1 reserves them for
// reporting), and the browser learns only codes the WebSocket API passes to JavaScript.
//
// Upstream closed, browser is told (toClient):
//   - 1000, 1001 and 3000-4999 (Cartesia's own): the same code and reason.
//   - 1003, 1007, 1008, 1009, 1011, 1012, 1013: the same code and reason; they describe
//     the session (unacceptable data, policy, a message too big, a server fault, restart,
//     try later) and browsers deliver them unchanged.
//   - a close frame with no code (1005): 1000 with no reason.
//   - anything else (1002 protocol error, 1010, 1014, unassigned codes): 1011 with a
//     reason naming the upstream code.
//   - no close frame at all, or an upstream message over the read limit: 1011.
//
// Browser closed, upstream is told (toUpstream):
//   - 1000, 1001 and 3000-4999 (all a page can send): the same code and reason.
//   - no code (1005): 1000.
//   - anything else, or the browser vanished: 1001 "client went away".
//
// The proxy's own endings: sign-out or an expired session 1008 "session ended" to the
// browser (1000 upstream); a client message over the read limit 1009 (sent by the
// library); the client's message rate exceeded 1008; idle 1001; a dead upstream leg 1011.
func toClient(code websocket.StatusCode, reason string) closeMsg {
	reason = cleanReason(reason)
	switch {
	case code == websocket.StatusNoStatusRcvd:
		return closeMsg{code: websocket.StatusNormalClosure}
	case passToClient[code], code >= 3000 && code <= 4999:
		return closeMsg{code: code, reason: reason}
	}
	return closeMsg{code: websocket.StatusInternalError,
		reason: fmt.Sprintf("upstream closed with %d", int(code))}
}

// passToClient are the standard codes relayed unchanged to the browser.
var passToClient = map[websocket.StatusCode]bool{
	websocket.StatusNormalClosure: true, websocket.StatusGoingAway: true,
	websocket.StatusUnsupportedData: true, websocket.StatusInvalidFramePayloadData: true,
	websocket.StatusPolicyViolation: true, websocket.StatusMessageTooBig: true,
	websocket.StatusInternalError: true, websocket.StatusServiceRestart: true,
	websocket.StatusTryAgainLater: true,
}

func toUpstream(code websocket.StatusCode, reason string) closeMsg {
	switch {
	case code == websocket.StatusNoStatusRcvd:
		return closeMsg{code: websocket.StatusNormalClosure}
	case code == websocket.StatusNormalClosure, code == websocket.StatusGoingAway,
		code >= 3000 && code <= 4999:
		return closeMsg{code: code, reason: cleanReason(reason)}
	}
	return closeMsg{code: websocket.StatusGoingAway, reason: "client went away"}
}

// cleanReason keeps a close reason sendable: valid UTF-8 (browsers fail a connection
// whose close reason is not) and within the 123 bytes a close frame has room for.
func cleanReason(s string) string {
	s = strings.ToValidUTF8(s, "")
	for len(s) > 123 {
		s = strings.ToValidUTF8(s[:123], "")
	}
	return s
}

// relay is one browser WebSocket paired with one upstream WebSocket. Two pumps copy
// messages, one each way, preserving text and binary; the first to stop, or the proxy
// (sign-out, idle, a failed ping), decides the ending, and run closes both legs.
type relay struct {
	p                *Proxy
	client, upstream *websocket.Conn
	limits           WebSocketLimits
	// secret is the token the upstream leg was dialled with: scrubbed from anything
	// upstream says that the proxy itself passes on (close reasons), so that a quoting
	// upstream cannot hand it to page JavaScript. guard finds it in upstream's messages,
	// which are then not relayed at all.
	secret string
	guard  *echoGuard
	rate   *rate.Limiter
	idle   *time.Timer

	bytesUp, bytesDown atomic.Int64

	// sessionID and absolute name the session the relay runs for and its absolute
	// deadline (see watch); an empty sessionID watches nothing. used says a message was
	// relayed since the session was last touched: the one cost the watch puts on a
	// message.
	sessionID string
	absolute  time.Time
	used      atomic.Bool

	mu   sync.Mutex
	end  *ending
	done chan struct{}
}

func newRelay(p *Proxy, client, upstream *websocket.Conn, secret string) *relay {
	l := p.cfg.WebSocket
	rl := &relay{p: p, client: client, upstream: upstream, limits: l, secret: secret,
		guard: newEchoGuard(secret),
		rate:  rate.NewLimiter(rate.Limit(l.MessageRate), l.MessageBurst),
		done:  make(chan struct{})}
	rl.idle = time.AfterFunc(l.Idle, func() { rl.stop(endIdle) })
	return rl
}

// stop records the relay's ending; the first call wins.
func (rl *relay) stop(e ending) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if rl.end == nil {
		rl.end = &e
		close(rl.done)
	}
}

// run relays until the ending is decided, closes both legs (concurrently: each close
// handshake waits for its own peer) and returns once every goroutine of the pair has
// exited, so that nothing outlives the handler.
func (rl *relay) run() ending {
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { rl.pump(rl.client, rl.upstream, true) })
	wg.Go(func() { rl.pump(rl.upstream, rl.client, false) })
	wg.Go(func() { rl.keepalive(ctx) })
	if rl.sessionID != "" {
		wg.Go(func() { rl.watchSession(ctx) })
	}

	<-rl.done
	rl.mu.Lock()
	e := *rl.end
	rl.mu.Unlock()

	var closing sync.WaitGroup
	closing.Go(func() { closeLeg(rl.client, e.client) })
	closing.Go(func() { closeLeg(rl.upstream, e.upstream) })
	closing.Wait()

	cancel()
	rl.idle.Stop()
	wg.Wait()
	return e
}

// closeLeg ends one connection as m says. Close bounds its handshake (5 s to write, 5 s
// to hear back) and closes the socket in any case.
func closeLeg(c *websocket.Conn, m closeMsg) {
	if m.code == 0 || m.done {
		_ = c.CloseNow()
		return
	}
	_ = c.Close(m.code, m.reason)
}

// pump copies messages from src to dst until either fails. fromClient says which way it
// runs, for the read limits' and the rate limit's sake and to decide the ending.
func (rl *relay) pump(src, dst *websocket.Conn, fromClient bool) {
	for {
		// No context: a read ends when its connection is closed, which run does once the
		// ending is decided. A cancelled read context would close the connection without
		// the close handshake run is about to perform.
		typ, msg, err := src.Read(context.Background())
		if err != nil {
			rl.stop(rl.scrub(readEnded(fromClient, err)))
			return
		}
		if fromClient && !rl.rate.AllowN(rl.p.cfg.Now(), 1) {
			rl.stop(endRateExceeded)
			return
		}
		if !fromClient && rl.guard.found(msg) {
			rl.stop(endTokenEcho)
			return
		}
		rl.idle.Reset(rl.limits.Idle)
		if !rl.used.Load() {
			// Loading first keeps the cache line shared while the flag is already set,
			// so the two pumps do not fight over it on every message.
			rl.used.Store(true)
		}

		ctx, cancel := context.WithTimeout(context.Background(), rl.limits.WriteTimeout)
		err = dst.Write(ctx, typ, msg)
		cancel()
		if err != nil {
			rl.stop(writeFailed(fromClient))
			return
		}
		if fromClient {
			rl.bytesUp.Add(int64(len(msg)))
		} else {
			rl.bytesDown.Add(int64(len(msg)))
		}
	}
}

// reasonWithheld replaces an upstream close reason that holds part of the token.
const reasonWithheld = "upstream close reason withheld"

// scrub removes the upstream token (and any "Bearer ...") from the close reason the
// browser will read. A reason holds at most 123 bytes and a token about 290, so a
// quoting upstream could hand over the token in pieces, one per socket, that no
// whole-token search finds: a reason that still shares a run of leak.Run bytes
// with the token is replaced by a fixed one. The close code passes either way.
func (rl *relay) scrub(e ending) ending {
	if e.client.reason == "" {
		return e
	}
	e.client.reason = cleanReason(token.Redact(e.client.reason, rl.secret))
	if rl.guard.sharesRun(e.client.reason) {
		e.client.reason = reasonWithheld
		e.note, e.echo = noteTokenEcho, "close_reason"
	}
	return e
}

// readEnded decides the ending when a read from one leg fails.
func readEnded(fromClient bool, err error) ending {
	var ce websocket.CloseError
	closed := errors.As(err, &ce)
	tooBig := errors.Is(err, websocket.ErrMessageTooBig)

	if fromClient {
		gone := closeMsg{code: websocket.StatusGoingAway, reason: "client went away"}
		switch {
		case closed:
			return ending{client: closeMsg{code: ce.Code, done: true},
				upstream: toUpstream(ce.Code, ce.Reason), note: "client_closed"}
		case tooBig:
			return ending{client: closeMsg{code: websocket.StatusMessageTooBig, done: true},
				upstream: gone, note: "client_message_too_big"}
		}
		return ending{upstream: gone, note: "client_gone"}
	}

	switch {
	case closed:
		return ending{upstream: closeMsg{code: ce.Code, done: true},
			client: toClient(ce.Code, ce.Reason), note: "upstream_closed"}
	case tooBig:
		return ending{upstream: closeMsg{code: websocket.StatusMessageTooBig, done: true},
			client: closeMsg{code: websocket.StatusInternalError,
				reason: "upstream message too big"},
			note: "upstream_message_too_big"}
	}
	return ending{client: closeMsg{code: websocket.StatusInternalError,
		reason: "upstream connection lost"}, note: "upstream_gone"}
}

// writeFailed decides the ending when a write to one leg fails or times out: that leg is
// dead or has stopped reading.
func writeFailed(fromClient bool) ending {
	if fromClient {
		return ending{client: closeMsg{code: websocket.StatusInternalError,
			reason: "upstream connection lost"}, note: "upstream_write_failed"}
	}
	return ending{upstream: closeMsg{code: websocket.StatusGoingAway,
		reason: "client went away"}, note: "client_write_failed"}
}

// keepalive pings both legs every PingInterval until ctx ends. A leg that does not answer
// within PingTimeout is dead (a half-open TCP connection never reports itself) and ends
// the relay.
func (rl *relay) keepalive(ctx context.Context) {
	t := time.NewTicker(rl.limits.PingInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}

		pctx, cancel := context.WithTimeout(ctx, rl.limits.PingTimeout)
		var upErr, clientErr error
		var wg sync.WaitGroup
		wg.Go(func() { upErr = rl.upstream.Ping(pctx) })
		wg.Go(func() { clientErr = rl.client.Ping(pctx) })
		wg.Wait()
		cancel()

		switch {
		case ctx.Err() != nil:
			return
		case upErr != nil:
			rl.stop(endUpstreamSilent)
			return
		case clientErr != nil:
			rl.stop(endClientSilent)
			return
		}
	}
}

// sessionTouchEvery is the most often a relay records its traffic as use of the session:
// an hour's idle timeout then never ends a live call, and a busy socket costs the store
// one write a minute.
const sessionTouchEvery = time.Minute

// watch makes the relay end with its session: run then closes both legs with 1008
// "session ended" at sess's absolute deadline, and when a periodic look-up finds the
// session gone or expired. Call it before run.
func (rl *relay) watch(sess session.Session) {
	rl.sessionID, rl.absolute = sess.ID, sess.AbsoluteExpiry
}

// watchSession ends the relay when its session ends, until ctx does.
//
// The absolute deadline is known from the start, so a timer ends the relay on time
// without asking the store. Idle expiry moves with use, and a session can also vanish
// without EndSession being called (a sign-out handled by another replica sharing the
// store, a sweep), so every SessionCheck the store is asked again. That same look-up
// keeps a live call's session from idling out: when messages were relayed since the
// last touch, and that touch is at least sessionTouchEvery old, it is a Touch instead of
// a Get. The first touch is the one the upgrade itself made.
//
// A store error other than "not found" or "expired" ends nothing: a shared store's
// hiccup should not cut every call, and the absolute timer still holds. It is logged.
func (rl *relay) watchSession(ctx context.Context) {
	check := time.NewTicker(rl.limits.SessionCheck)
	defer check.Stop()
	var absolute <-chan time.Time
	if !rl.absolute.IsZero() {
		t := time.NewTimer(rl.absolute.Sub(rl.p.cfg.Now()))
		defer t.Stop()
		absolute = t.C
	}
	touched := rl.p.cfg.Now()

	for {
		select {
		case <-ctx.Done():
			return
		case <-absolute:
			rl.stop(endSessionExpired)
			return
		case <-check.C:
		}

		now := rl.p.cfg.Now()
		var err error
		if now.Sub(touched) >= sessionTouchEvery && rl.used.CompareAndSwap(true, false) {
			if _, err = rl.p.cfg.Sessions.Touch(rl.sessionID); err == nil {
				touched = now
			}
		} else {
			_, err = rl.p.cfg.Sessions.Get(rl.sessionID)
		}
		if err == nil {
			continue
		}
		if e, ended := sessionEnding(err); ended {
			rl.stop(e)
			return
		}
		rl.p.cfg.Logger.Warn("session_check_failed",
			"session", session.Fingerprint(rl.sessionID))
	}
}

// sessionEnding maps a store error to the relay's ending: a session the store does not
// know (deleted, or swept after it expired) ended; one it reports expired expired. Any
// other error is no verdict on the session.
func sessionEnding(err error) (ending, bool) {
	switch {
	case errors.Is(err, session.ErrExpired):
		return endSessionExpired, true
	case errors.Is(err, session.ErrNotFound):
		return endSessionEnded, true
	}
	return ending{}, false
}
