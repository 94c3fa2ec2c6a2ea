package proxy_test

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// Item 30: a WebSocket ends with its session, whether the session is deleted, reaches its
// absolute deadline or idles out, and traffic on it counts as use of the session.

// storeSpy wraps the harness's session store: it counts the proxy's look-ups, can answer
// them with an error, and can move the absolute deadline the snapshots report.
type storeSpy struct {
	session.Store
	gets, touches atomic.Int64

	mu       sync.Mutex
	err      error
	absolute time.Time
}

func (s *storeSpy) Get(id string) (session.Session, error) {
	s.gets.Add(1)
	return s.answer(s.Store.Get(id))
}

func (s *storeSpy) Touch(id string) (session.Session, error) {
	s.touches.Add(1)
	return s.answer(s.Store.Touch(id))
}

func (s *storeSpy) answer(sess session.Session, err error) (session.Session, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return session.Session{}, s.err
	}
	if !s.absolute.IsZero() {
		sess.AbsoluteExpiry = s.absolute
	}
	return sess, err
}

func (s *storeSpy) failWith(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.err = err
}

func (s *storeSpy) setAbsolute(t time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.absolute = t
}

// spiedHarness is a harness whose proxy reaches the sessions through a storeSpy and
// looks them up again every check, in front of an echoing upstream.
func spiedHarness(t *testing.T, check time.Duration) (*harness, *storeSpy, *wsUpstream) {
	t.Helper()
	spy := &storeSpy{}
	h := newHarness(t, func(c *proxy.Config) {
		spy.Store = c.Sessions
		c.Sessions = spy
		c.WebSocket.SessionCheck = check
	})
	return h, spy, h.wsUpstream(echo)
}

// echoOnce sends msg and expects the upstream's echo back.
func echoOnce(t *testing.T, c *websocket.Conn, msg string) {
	t.Helper()
	writeWithin(t, c, websocket.MessageText, []byte(msg))
	if _, got, err := readWithin(t, c); err != nil || string(got) != "echo:"+msg {
		t.Fatalf("echo of %q: %q %v", msg, got, err)
	}
}

// proxyNotes returns the note of every `proxy` log event so far.
func proxyNotes(t *testing.T, h *harness) []string {
	t.Helper()
	var notes []string
	for _, e := range h.logs.Events(t, "proxy") {
		notes = append(notes, e.Str("note"))
	}
	return notes
}

// sessionEnded is the close every way of losing the session ends with, sign-out's.
var sessionEnded = closed{websocket.StatusPolicyViolation, "session ended"}

func TestWebSocketEndsAtItsSessionsAbsoluteDeadline(t *testing.T) {
	// The check runs far too rarely to matter: only the deadline known at the upgrade
	// can end this socket in time.
	h, spy, up := spiedHarness(t, time.Hour)
	spy.setAbsolute(h.clk.Now().Add(200 * time.Millisecond))

	c := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
	echoOnce(t, c, "before")

	if got := expectClose(t, c); got != sessionEnded {
		t.Errorf("browser saw %+v at the absolute deadline, want 1008 session ended", got)
	}
	if got := up.next(t); got != (closed{websocket.StatusNormalClosure, "session ended"}) {
		t.Errorf("upstream saw %+v, want 1000 session ended", got)
	}
	waitFor(t, "the relay to end", func() bool { return h.proxy.OpenWebSockets() == 0 })
	waitFor(t, "the log event", func() bool { return len(proxyNotes(t, h)) == 1 })
	if notes := proxyNotes(t, h); notes[0] != "session_expired" {
		t.Errorf("log note %q, want session_expired", notes[0])
	}
}

func TestWebSocketOfAnExpiredSessionEndsAtOnce(t *testing.T) {
	// A deadline already past when the relay starts (the clock moved during the
	// handshake) ends it without waiting for a check.
	h, spy, _ := spiedHarness(t, time.Hour)
	spy.setAbsolute(h.clk.Now().Add(-time.Second))

	c, _, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
		h.tokenCookie(token.TTS, time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if got := expectClose(t, c); got != sessionEnded {
		t.Errorf("browser saw %+v, want 1008 session ended", got)
	}
}

func TestWebSocketEndsWhenItsSessionIdlesOut(t *testing.T) {
	h, spy, _ := spiedHarness(t, 5*time.Millisecond)
	c := h.mustDialWS("/cartesia/stt/websocket?model=ink-whisper", token.STT)
	echoOnce(t, c, "hello")
	// A check has run on the fake clock's present and kept the socket.
	checks := spy.gets.Load()
	waitFor(t, "a session check", func() bool { return spy.gets.Load() > checks })

	h.clk.Advance(session.DefaultIdle + time.Second)
	if got := expectClose(t, c); got != sessionEnded {
		t.Errorf("browser saw %+v after the idle timeout, want 1008 session ended", got)
	}
	waitFor(t, "the log event", func() bool { return len(proxyNotes(t, h)) == 1 })
	if notes := proxyNotes(t, h); notes[0] != "session_expired" {
		t.Errorf("log note %q, want session_expired", notes[0])
	}
}

func TestWebSocketEndsWhenItsSessionIsDeletedElsewhere(t *testing.T) {
	// Nobody calls EndSession: a sign-out on another replica sharing the store, or a
	// sweep, only removes the session. The periodic check notices.
	h, _, _ := spiedHarness(t, 5*time.Millisecond)
	c := h.mustDialWS("/cartesia/agents/stream/a1", token.Agent)
	echoOnce(t, c, "hello")

	_ = h.sessions.Delete(h.sess.ID)
	if got := expectClose(t, c); got != sessionEnded {
		t.Errorf("browser saw %+v, want 1008 session ended", got)
	}
	waitFor(t, "the log event", func() bool { return len(proxyNotes(t, h)) == 1 })
	if notes := proxyNotes(t, h); notes[0] != "session_ended" {
		t.Errorf("log note %q, want session_ended", notes[0])
	}
}

func TestLiveWebSocketKeepsItsSessionFromIdlingOut(t *testing.T) {
	h, spy, _ := spiedHarness(t, 5*time.Millisecond)
	c := h.mustDialWS("/cartesia/agents/stream/a1", token.Agent)
	lastSeen := func() time.Time {
		s, err := h.sessions.Get(h.sess.ID)
		if err != nil {
			t.Fatalf("the session of a live call: %v", err)
		}
		return s.LastSeen
	}

	// Traffic within the minute after the upgrade's own touch costs the store no write.
	// waitChecks waits until the relay has looked the session up n more times.
	waitChecks := func(n int64) {
		t.Helper()
		from := spy.gets.Load() + spy.touches.Load()
		waitFor(t, "session checks", func() bool {
			return spy.gets.Load()+spy.touches.Load() >= from+n
		})
	}

	touches := spy.touches.Load()
	for i := range 5 {
		echoOnce(t, c, "early")
		h.clk.Advance(10 * time.Second)
		waitChecks(2)
		if spy.touches.Load() != touches {
			t.Fatalf("the session was touched %d s after the upgrade", 10*(i+1))
		}
	}

	// A call that goes on for longer than the idle timeout: each stretch of traffic is
	// recorded, so the session never reaches its idle deadline.
	for range 4 {
		h.clk.Advance(20 * time.Minute)
		echoOnce(t, c, "talking")
		now := h.clk.Now()
		waitFor(t, "the traffic to touch the session", func() bool {
			return lastSeen().Equal(now)
		})
	}
	echoOnce(t, c, "80 minutes in")

	// A quiet socket is no use of the session: checks go on, LastSeen stays put. (The
	// first stretch lets the last echo's mark be recorded.)
	h.clk.Advance(2 * time.Minute)
	waitChecks(2)
	before := lastSeen()
	h.clk.Advance(2 * time.Minute)
	waitChecks(2)
	if got := lastSeen(); !got.Equal(before) {
		t.Errorf("a quiet socket touched the session: LastSeen %v, was %v", got, before)
	}
}

func TestWebSocketOutlivesItsToken(t *testing.T) {
	// Cartesia checks a token when a connection opens, and so does the proxy: an open
	// stream is not cut at token expiry (a voice call can outlast a short token).
	h, _, _ := spiedHarness(t, 5*time.Millisecond)
	c, _, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
		h.tokenCookie(token.TTS, 10*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	echoOnce(t, c, "before")
	h.clk.Advance(time.Minute)
	echoOnce(t, c, "after the token expired")
	if n := h.proxy.OpenWebSockets(); n != 1 {
		t.Errorf("%d open sockets, want 1", n)
	}
}

func TestWebSocketSurvivesAStoreThatCannotAnswer(t *testing.T) {
	// A store failure is no verdict on the session: the call goes on, and the failure
	// is logged (with a fingerprint, never the session id).
	h, spy, _ := spiedHarness(t, 5*time.Millisecond)
	c := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
	spy.failWith(errors.New("store unreachable"))
	waitFor(t, "a failed check", func() bool {
		return strings.Contains(h.logText(), "session_check_failed")
	})
	echoOnce(t, c, "still here")
	if strings.Contains(h.logText(), h.sess.ID) {
		t.Error("the session id reached the log")
	}

	spy.failWith(nil)
	_ = h.sessions.Delete(h.sess.ID)
	if got := expectClose(t, c); got != sessionEnded {
		t.Errorf("after the store recovered: %+v, want 1008 session ended", got)
	}
}

// appOrigin is a sibling subdomain's page, listed as an extra WebSocket origin.
const appOrigin = "https://app.example.com"

func TestWebSocketFromAnExtraOrigin(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) {
		c.ExtraOrigins = []string{appOrigin, "http://localhost:3000"}
	})
	h.wsUpstream(echo)

	for _, hdr := range []http.Header{
		{"Origin": {appOrigin}, "Sec-Fetch-Site": {"same-site"},
			"Sec-Fetch-Mode": {"websocket"}},
		{"Origin": {appOrigin}, "Sec-Fetch-Site": {"same-origin"}},
		{"Origin": {appOrigin}},
		{"Origin": {"http://localhost:3000"}, "Sec-Fetch-Site": {"same-site"}},
	} {
		c, resp, err := h.dialWS("/cartesia/tts/websocket", hdr, h.sessionCookie(),
			h.tokenCookie(token.TTS, time.Minute))
		if err != nil {
			status, code := refusal(t, resp, err)
			t.Errorf("%v: refused %d %s", hdr, status, code)
			continue
		}
		echoOnce(t, c, "from the app")
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
}

func TestWebSocketExtraOriginLookalikesAreRefusedBeforeDial(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) { c.ExtraOrigins = []string{appOrigin} })
	h.wsUpstream(echo)

	tests := []struct {
		name string
		hdr  http.Header
	}{
		{"cross-site fetch", http.Header{"Origin": {appOrigin},
			"Sec-Fetch-Site": {"cross-site"}}},
		{"navigation fetch", http.Header{"Origin": {appOrigin}, "Sec-Fetch-Site": {"none"}}},
		{"not a websocket fetch", http.Header{"Origin": {appOrigin},
			"Sec-Fetch-Site": {"same-site"}, "Sec-Fetch-Mode": {"cors"}}},
		{"suffix", http.Header{"Origin": {appOrigin + ".evil.com"}}},
		{"sub-subdomain", http.Header{"Origin": {"https://x.app.example.com"}}},
		{"parent", http.Header{"Origin": {"https://example.com"}}},
		{"other scheme", http.Header{"Origin": {"http://app.example.com"}}},
		{"other port", http.Header{"Origin": {appOrigin + ":8443"}}},
		{"default port", http.Header{"Origin": {appOrigin + ":443"}}},
		{"trailing slash", http.Header{"Origin": {appOrigin + "/"}}},
		{"upper case", http.Header{"Origin": {"https://APP.example.com"}}},
		{"null", http.Header{"Origin": {"null"}}},
		{"two origins", http.Header{"Origin": {appOrigin, appOrigin}}},
		// Same-site is for the extra origins: the page's own origin is same-origin.
		{"own origin, same-site fetch", http.Header{"Origin": {h.origin},
			"Sec-Fetch-Site": {"same-site"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := h.refused("/cartesia/tts/websocket", tt.hdr,
				h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
			if status != http.StatusForbidden || code != "csrf_rejected" {
				t.Errorf("got %d %s, want 403 csrf_rejected", status, code)
			}
		})
	}
	if n := len(h.upstreamSaw()); n != 0 {
		t.Errorf("upstream was dialled %d times for refused origins", n)
	}
}

func TestNewRefusesBadOriginsAndSpoolDirs(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		cfg  func(*proxy.Config)
	}{
		{"extra origin with a path", func(c *proxy.Config) {
			c.ExtraOrigins = []string{appOrigin + "/"}
		}},
		{"extra origin without a scheme", func(c *proxy.Config) {
			c.ExtraOrigins = []string{"app.example.com"}
		}},
		{"extra origin wildcard", func(c *proxy.Config) { c.ExtraOrigins = []string{"*"} }},
		{"missing spool dir", func(c *proxy.Config) {
			c.SpoolDir = filepath.Join(t.TempDir(), "none")
		}},
		{"spool dir is a file", func(c *proxy.Config) { c.SpoolDir = file }},
	}
	base := func() proxy.Config {
		h := newHarness(t, nil)
		return proxy.Config{Upstream: h.fake.URL(), Version: "2026-03-01",
			Sealer: h.sealer, Sessions: h.sessions}
	}()
	for _, tt := range tests {
		c := base
		tt.cfg(&c)
		if _, err := proxy.New(c); err == nil {
			t.Errorf("%s: New accepted it", tt.name)
		}
	}
	c := base
	c.ExtraOrigins, c.SpoolDir = []string{appOrigin, "http://[::1]:8080"}, t.TempDir()
	if _, err := proxy.New(c); err != nil {
		t.Errorf("New refused good extra origins and spool dir: %v", err)
	}
}
