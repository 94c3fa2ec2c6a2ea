package proxy

import (
	"bytes"
	"net/http"

	"github.com/voxgate/voxgate/internal/leak"
)

// echoGuard finds the call's own access token in what upstream sends back, so that an
// upstream that echoes it (in a transcript, an event, a message, a header) cannot hand it
// to the page, which must never hold it. It looks for the exact bytes sent upstream and,
// when it differs, their URL-query-escaped form.
//
// Whole messages (WebSocket messages, header values) are checked with found. Streams are
// checked with next, read by read: a token split across two reads is caught because the
// bytes that could begin one are held back until the next read shows whether they do.
// Nothing of an echo is ever passed on, not even its first half.
//
// A nil *echoGuard (a call without a token) finds nothing and holds nothing back.
// It allocates only when made; next and found allocate nothing. One guard serves one
// stream; found may be called from any goroutine.
//
// Close reasons, which are too short to hold a whole token, are checked for any run of
// leak.Run bytes of it instead (see sharesRun).
//
// Limitation: only verbatim echoes are caught. A token that upstream transforms (base64,
// JSON escapes of other characters, reversal) or spreads over several WebSocket messages,
// SSE events, headers or answers passes. The guard stops careless echoes, not a hostile
// upstream, which would be trusted with the token anyway.
type echoGuard struct {
	needles [][]byte
	// texts are the needles as strings, for header values.
	texts []string
	// longest is the length of the longest needle; a stream holds back fewer bytes.
	longest int
	// held are bytes of the stream not yet passed on, because they are a prefix of a
	// needle; spare is the buffer the next hold is built in (the two swap each read, so
	// that the bytes next returns stay valid until the following call). join is scratch
	// for the held bytes followed by the head of the next read.
	held, spare, join []byte
}

// newEchoGuard returns the guard for secret, or nil when there is no secret.
func newEchoGuard(secret string) *echoGuard {
	if secret == "" {
		return nil
	}
	g := &echoGuard{texts: leak.Forms(secret)}
	g.needles = leak.Needles(g.texts)
	for _, n := range g.texts {
		g.longest = max(g.longest, len(n))
	}
	g.held = make([]byte, 0, g.longest-1)
	g.spare = make([]byte, 0, g.longest-1)
	g.join = make([]byte, 0, 2*(g.longest-1))
	return g
}

// sharesRun reports whether s shares a run of leak.Run or more bytes with the token in
// any of its forms (see leak.SharesRun). It is meant for short texts.
func (g *echoGuard) sharesRun(s string) bool {
	return g != nil && leak.SharesRun(s, g.texts...)
}

// found reports whether p contains the token in any of its forms.
func (g *echoGuard) found(p []byte) bool {
	return g != nil && leak.In(p, g.needles)
}

// foundIn reports whether any value of h contains the token.
func (g *echoGuard) foundIn(h http.Header) bool {
	if g == nil {
		return false
	}
	for _, vs := range h {
		for _, v := range vs {
			if leak.InString(v, g.texts) {
				return true
			}
		}
	}
	return false
}

// next takes the next read p of a stream. It reports echo when the token occurs in the
// stream, counting the bytes held back from earlier reads; nothing more may then be
// passed on. Otherwise first and then second are the bytes now safe to pass on (either
// may be empty): they stay valid until the next call, and p must not change until second
// has been used. What could still begin a token stays held.
func (g *echoGuard) next(p []byte) (first, second []byte, echo bool) {
	if g == nil {
		return nil, p, false
	}

	// A token that began in the held bytes ends within the next longest-1 bytes of p.
	// With nothing held (the usual case: audio rarely ends in a token's first bytes),
	// that head is part of p and checked with it.
	head := p[:min(len(p), g.longest-1)]
	g.join = append(append(g.join[:0], g.held...), head...)
	if len(g.held) > 0 && g.found(g.join) || g.found(p) {
		return nil, nil, true
	}

	// The new hold is the longest end of the stream that begins a needle. When p is
	// shorter than a hold can be, that end may reach back into the old hold, and join
	// holds all of both.
	tail := p
	if len(p) < g.longest-1 {
		tail = g.join
	}
	k := g.heldBack(tail)

	if k <= len(p) {
		first, second = g.held, p[:len(p)-k]
		g.spare = append(g.spare[:0], p[len(p)-k:]...)
	} else {
		still := len(g.held) - (k - len(p)) // old held bytes that are passed on now
		first = g.held[:still]
		g.spare = append(append(g.spare[:0], g.held[still:]...), p...)
	}
	g.held, g.spare = g.spare, g.held
	return first, second, false
}

// rest returns the bytes still held at the end of the stream, which can no longer begin
// a token, and forgets them.
func (g *echoGuard) rest() []byte {
	if g == nil {
		return nil
	}
	out := g.held
	g.held, g.spare = g.spare[:0], g.held
	return out
}

// heldBack is the length of the longest end of b that is a proper prefix of a needle.
// Candidates are the places of the needle's first byte in b's last len(needle)-1 bytes,
// found left to right (longest first) with IndexByte.
func (g *echoGuard) heldBack(b []byte) int {
	best := 0
	for _, n := range g.needles {
		w := b[len(b)-min(len(n)-1, len(b)):]
		for off := 0; len(w)-off > best; {
			i := bytes.IndexByte(w[off:], n[0])
			if i < 0 || len(w)-off-i <= best {
				break
			}
			if tail := w[off+i:]; bytes.Equal(tail, n[:len(tail)]) {
				best = len(tail)
				break
			}
			off += i + 1
		}
	}
	return best
}

// noteTokenEcho is the log note and event name of a blocked echo.
const noteTokenEcho = "token_echo_blocked"

// echoBlocked logs one token_echo_blocked event (route, user, grant and where the echo
// was: never the token or the text around it) and notes it for the call's proxy event.
func (c *call) echoBlocked(route, where string) {
	c.note = noteTokenEcho
	c.p.cfg.Logger.Warn(noteTokenEcho, "route", route, "user", c.user,
		"grant", string(c.rt.Grant), "where", where)
}
