package proxy_test

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// upstreamToken is the token the harness session holds for every grant: the first one
// the harness's fresh fake issues, named here so that test tables can use it.
const upstreamToken = sectest.TokenPrefix + "1"

// harness is a proxy in front of a sectest fake Cartesia, with one signed-in user.
// Every test that builds one ends with the sectest post-conditions G1-G4: nothing the
// test was answered or the proxy logged holds a token, the fake saw only the proxy's
// upstream routes and never the key, and the evil listener saw nothing.
type harness struct {
	t    *testing.T
	clk  *sectest.Clock
	fake *sectest.FakeCartesia
	logs *sectest.LogSink
	rec  *sectest.Recorder
	// client records every answer it reads in rec; use it for every request to front.
	client   *http.Client
	sessions *session.Memory
	sealer   *seal.Sealer
	sess     session.Session
	front    *httptest.Server
	origin   string
	proxy    *proxy.Proxy
}

func newHarness(t *testing.T, cfg func(*proxy.Config)) *harness {
	t.Helper()
	h := &harness{t: t, clk: sectest.NewClock(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)),
		logs: &sectest.LogSink{}, rec: &sectest.Recorder{}}
	h.client = h.rec.Client()
	// Registered first, so that the checks run after the proxy and the fake are closed.
	checks := &sectest.Checks{Logs: h.logs, Responses: h.rec, Allowed: upstreamRoutes()}
	sectest.Guard(t, checks)
	// Plain HTTP keeps proxy.New's own default client under test.
	h.fake = sectest.NewPlainFakeCartesia(t)
	checks.Fake, checks.Evil = h.fake, sectest.NewEvil(t)
	if tok := h.fake.Issue("tts", "stt", "agent"); tok != upstreamToken {
		t.Fatalf("the fake issued %q first, want %q", tok, upstreamToken)
	}

	h.sessions = session.NewMemory(session.MemoryConfig{Now: h.clk.Now})
	var err error
	h.sealer, err = seal.NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	h.sess, _ = h.sessions.Create(session.User{Name: "alice", Grants: token.Grants(),
		MaxTTL: time.Hour, Agents: []string{session.AnyAgent}})

	h.front = httptest.NewUnstartedServer(nil)
	h.origin = "http://" + h.front.Listener.Addr().String()

	c := proxy.Config{
		Upstream: h.fake.URL(),
		Version:  "2026-03-01",
		Origin:   h.origin,
		Sealer:   h.sealer,
		Sessions: h.sessions,
		Logger:   h.logs.Logger(),
		Now:      h.clk.Now,
	}
	if cfg != nil {
		cfg(&c)
	}
	p, err := proxy.New(c)
	if err != nil {
		t.Fatal(err)
	}
	h.proxy = p
	mux := http.NewServeMux()
	for _, rt := range proxy.Routes() {
		mux.Handle(rt.Method+" /cartesia"+rt.Path, p.Handler(rt))
	}
	h.front.Config.Handler = mux
	h.front.Start()
	t.Cleanup(h.front.Close)
	return h
}

// upstreamRoutes is G3's allowlist, every proxy route's upstream: the proxy mints
// nothing, so POST /access-token is not on it.
func upstreamRoutes() []string {
	var out []string
	for _, rt := range proxy.Routes() {
		out = append(out, rt.Method+" "+rt.Upstream)
	}
	return out
}

// answer makes f the fake's answer on every upstream route, after the fake has recorded
// the request and its body; nil puts the fake's own answers back. It is safe while
// requests are in flight.
func (h *harness) answer(f http.HandlerFunc) {
	for _, route := range upstreamRoutes() {
		if f == nil {
			h.fake.Handle(route, h.fake.Default(route))
			continue
		}
		h.fake.Handle(route, f)
	}
}

// answerUnread is answer for an f that must get the live request body: a WebSocket
// handshake, or an upload read as it streams. The fake then records no body.
func (h *harness) answerUnread(f http.HandlerFunc) {
	for _, route := range upstreamRoutes() {
		h.fake.HandleUnread(route, f)
	}
}

// upstreamSaw returns every request the fake received, in order.
func (h *harness) upstreamSaw() []sectest.Request { return h.fake.Requests() }

// logText is everything the proxy has logged.
func (h *harness) logText() string { return h.logs.String() }

// tokenCookie seals a token for the harness session, expiring ttl from now.
func (h *harness) tokenCookie(grant token.Grant, ttl time.Duration) *http.Cookie {
	v, err := h.sealer.Seal(h.sess.ID, token.Token{Value: token.NewValue(upstreamToken),
		Grant: grant, ExpiresAt: h.clk.Now().Add(ttl)})
	if err != nil {
		h.t.Fatal(err)
	}
	return &http.Cookie{Name: seal.CookieName(grant), Value: v}
}

func (h *harness) sessionCookie() *http.Cookie {
	return &http.Cookie{Name: session.CookieName, Value: h.sess.ID}
}

func (h *harness) request(body string, cookies ...*http.Cookie) *http.Request {
	r, err := http.NewRequest(http.MethodPost, h.front.URL+"/cartesia/tts/bytes",
		strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	return r
}

// do sends r through the recording client and reads the whole answer.
func (h *harness) do(r *http.Request) (*http.Response, string) {
	resp, err := h.client.Do(r)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// rawPost opens a connection to the proxy and writes a POST to path with the harness
// session and a live token for grant, the header lines in head (each ending in \r\n),
// then body, however little of what head announces; the connection closes with the
// test. It is for bodies that stall, trickle or stop.
func (h *harness) rawPost(path string, grant token.Grant, head, body string) net.Conn {
	h.t.Helper()
	conn, err := net.Dial("tcp", h.front.Listener.Addr().String())
	if err != nil {
		h.t.Fatal(err)
	}
	h.t.Cleanup(func() { _ = conn.Close() })
	tok := h.tokenCookie(grant, time.Minute)
	if _, err := fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\n%sCookie: %s=%s; %s=%s\r\n\r\n%s",
		path, head, session.CookieName, h.sess.ID, tok.Name, tok.Value, body); err != nil {
		h.t.Fatal(err)
	}
	return conn
}

// readRaw reads the answer to method path from a raw connection, giving up after 10 s,
// and notes it for G1.
func (h *harness) readRaw(conn net.Conn, method, path string) (*http.Response, string) {
	h.t.Helper()
	_ = conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		h.t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	h.rec.Note(method, path, resp.StatusCode, resp.Header, b)
	return resp, string(b)
}

func errorCode(t *testing.T, body string) reply.Detail {
	t.Helper()
	var b reply.Body
	if err := json.Unmarshal([]byte(body), &b); err != nil {
		t.Fatalf("body %q is not our error shape: %v", body, err)
	}
	return b.Error
}

func TestProxyForwardsOnlyAllowlistedRequestHeaders(t *testing.T) {
	h := newHarness(t, nil)
	r := h.request(`{"transcript":"hi"}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
	r.URL.RawQuery = "access_token=x&api_key=y&cartesia_version=1999-01-01"
	r.Header.Set("Accept", "audio/wav")
	r.Header.Set("Authorization", "Bearer attacker")
	r.Header.Set("X-API-Key", "attacker")
	r.Header["X_Api_Key"] = []string{"attacker3"}
	r.Header.Set("Proxy-Authorization", "Basic x")
	r.Header.Set("X-Forwarded-For", "10.0.0.1")
	r.Header.Set("X-Forwarded-Host", "evil.example")
	r.Header.Set("X-Forwarded-Proto", "https")
	r.Header.Set("Forwarded", "for=10.0.0.1;host=evil.example")
	r.Header.Set("Origin", "https://evil.example")
	r.Header.Set("Referer", "https://evil.example/page")
	r.Header.Set("User-Agent", "evil")
	r.Header.Set("Cartesia-Version", "1999-01-01")
	r.Header.Set("X-Random", "1")

	resp, body := h.do(r)
	if resp.StatusCode != http.StatusOK || body != string(sectest.Audio()) {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}

	got := h.upstreamSaw()
	if len(got) != 1 {
		t.Fatalf("upstream saw %d requests", len(got))
	}
	up := got[0]
	if up.Method != http.MethodPost || up.Path != "/tts/bytes" || up.RawQuery != "" {
		t.Errorf("upstream request %s %s?%s, want POST /tts/bytes with no query",
			up.Method, up.Path, up.RawQuery)
	}
	if string(up.Body) != `{"transcript":"hi"}` {
		t.Errorf("upstream body %q", up.Body)
	}

	want := map[string]string{
		"Authorization":    "Bearer " + upstreamToken,
		"Cartesia-Version": "2026-03-01",
		"User-Agent":       "voxgate",
		"Content-Type":     "application/json",
		"Accept":           "audio/wav",
	}
	// Transport-level headers that Go's client adds on its own.
	transport := map[string]bool{"Content-Length": true, "Accept-Encoding": true}
	for name, vals := range up.Header {
		if transport[name] {
			continue
		}
		w, ok := want[name]
		if !ok {
			t.Errorf("upstream saw header %s: %q", name, vals)
			continue
		}
		if len(vals) != 1 || vals[0] != w {
			t.Errorf("upstream %s = %q, want %q", name, vals, w)
		}
	}
	for name := range want {
		if up.Header.Get(name) == "" {
			t.Errorf("upstream did not get %s", name)
		}
	}
}

func TestProxyRelaysOnlyAllowlistedResponseHeaders(t *testing.T) {
	h := newHarness(t, nil)
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		hd := w.Header()
		hd.Set("Content-Type", "audio/wav")
		hd.Set("Cartesia-Request-Id", "req-42")
		hd.Set("Cartesia-File-ID", "file-7")
		hd.Set("Set-Cookie", "up=1; Domain=example.com")
		hd.Set("Access-Control-Allow-Origin", "*")
		hd.Set("Access-Control-Allow-Credentials", "true")
		hd.Set("Location", "https://evil.example/")
		hd.Set("Server", "cartesia-edge")
		hd.Set("X-Powered-By", "x")
		hd.Set("Strict-Transport-Security", "max-age=63072000; includeSubDomains")
		hd.Set("Alt-Svc", `h3=":443"`)
		hd.Set("WWW-Authenticate", "Basic realm=x")
		hd.Set("Connection", "X-Leak")
		hd.Set("X-Leak", "1")
		_, _ = io.WriteString(w, "audio")
	})
	resp, _ := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))

	for name, want := range map[string]string{"Content-Type": "audio/wav",
		"Cartesia-Request-Id": "req-42", "Cartesia-File-Id": "file-7"} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	for _, name := range []string{"Set-Cookie", "Access-Control-Allow-Origin",
		"Access-Control-Allow-Credentials", "Location", "Server", "X-Powered-By",
		"Strict-Transport-Security", "Alt-Svc", "WWW-Authenticate", "X-Leak"} {
		if v := resp.Header.Values(name); len(v) > 0 {
			t.Errorf("relayed upstream header %s: %q", name, v)
		}
	}
}

func TestProxyStreamsAsTheUpstreamWrites(t *testing.T) {
	h := newHarness(t, nil)
	firstSeen := make(chan struct{})
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = io.WriteString(w, "first-part|")
		w.(http.Flusher).Flush()
		// The second part is written only after the client has read the first: a proxy
		// that buffers the whole response would deadlock here until the timeout.
		select {
		case <-firstSeen:
		case <-time.After(5 * time.Second):
			return
		}
		_, _ = io.WriteString(w, "second-part")
	})

	resp, err := h.client.Do(
		h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	buf := make([]byte, len("first-part|"))
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first-part|" {
		t.Fatalf("first part %q, %v", buf, err)
	}
	close(firstSeen)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second-part" {
		t.Errorf("rest %q, want second-part", rest)
	}
}

func TestProxyRelaysUpstreamErrors(t *testing.T) {
	tests := []struct {
		name     string
		status   int
		ctype    string
		body     string
		wantCode string
		wantUp   reply.Upstream
	}{
		{"structured 400", 400, "application/json",
			`{"error_code":"model_not_found","title":"Bad model","message":"no such model",` +
				`"request_id":"r-1"}`,
			"upstream_error", reply.Upstream{Status: 400, ErrorCode: "model_not_found",
				Title: "Bad model", Message: "no such model", RequestID: "r-1"}},
		{"plain text 500", 500, "text/plain", "Internal Error: try later",
			"upstream_error", reply.Upstream{Status: 500, Title: "Internal Error",
				Message: "try later", RequestID: "hdr-id"}},
		{"401 means token_expired", 401, "application/json",
			`{"error_code":"token_expired","title":"Unauthorized","message":"expired"}`,
			"token_expired", reply.Upstream{Status: 401, ErrorCode: "token_expired",
				Title: "Unauthorized", Message: "expired", RequestID: "hdr-id"}},
		{"403 grant_forbidden", 403, "text/plain", "Forbidden: no tts grant",
			"grant_forbidden", reply.Upstream{Status: 403, Title: "Forbidden",
				Message: "no tts grant", RequestID: "hdr-id"}},
		{"429 rate_limited", 429, "application/json",
			`{"error_code":"concurrency_limited","title":"Too many","message":"slow"}`,
			"rate_limited", reply.Upstream{Status: 429, ErrorCode: "concurrency_limited",
				Title: "Too many", Message: "slow", RequestID: "hdr-id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.answer(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tt.ctype)
				w.Header().Set("Cartesia-Request-Id", "hdr-id")
				w.Header().Set("Set-Cookie", "x=1")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			})
			resp, body := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))

			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d", resp.StatusCode, tt.status)
			}
			d := errorCode(t, body)
			if d.Code != tt.wantCode || d.Upstream == nil || *d.Upstream != tt.wantUp {
				t.Errorf("error %+v upstream %+v\nwant code %s upstream %+v", d, d.Upstream,
					tt.wantCode, tt.wantUp)
			}
			if resp.Header.Get("Set-Cookie") != "" {
				t.Error("relayed the upstream Set-Cookie on an error")
			}
		})
	}
}

func TestProxyRefusesBeforeForwarding(t *testing.T) {
	h := newHarness(t, nil)
	other, _ := h.sessions.Create(session.User{Name: "bob", Grants: token.Grants()})
	foreign, _ := h.sealer.Seal(other.ID, token.Token{Value: token.NewValue(upstreamToken),
		Grant: token.TTS, ExpiresAt: h.clk.Now().Add(time.Minute)})
	good := h.tokenCookie(token.TTS, time.Minute)
	flipped := *good
	flipped.Value = good.Value[:10] + string(good.Value[10]^1) + good.Value[11:]
	sttAsTTS := h.tokenCookie(token.STT, time.Minute)
	sttAsTTS.Name = seal.CookieName(token.TTS)

	tests := []struct {
		name     string
		cookies  []*http.Cookie
		ctype    string
		body     string
		status   int
		code     string
		security bool
	}{
		{"no session", []*http.Cookie{good}, "", "{}", 401, "no_session", false},
		{"unknown session", []*http.Cookie{{Name: session.CookieName, Value: "forged"}, good},
			"", "{}", 401, "no_session", false},
		{"no token cookie", []*http.Cookie{h.sessionCookie()}, "", "{}", 401, "no_token", false},
		{"tampered token", []*http.Cookie{h.sessionCookie(), &flipped}, "", "{}", 401,
			"no_token", true},
		{"another session's token", []*http.Cookie{h.sessionCookie(),
			{Name: seal.CookieName(token.TTS), Value: foreign}}, "", "{}", 401, "no_token", true},
		{"another grant's token", []*http.Cookie{h.sessionCookie(), sttAsTTS}, "", "{}", 401,
			"no_token", true},
		{"raw token as cookie", []*http.Cookie{h.sessionCookie(),
			{Name: seal.CookieName(token.TTS), Value: upstreamToken}}, "", "{}", 401, "no_token", true},
		{"text/plain", []*http.Cookie{h.sessionCookie(), good}, "text/plain", "{}", 415,
			"unsupported_media_type", false},
		{"form", []*http.Cookie{h.sessionCookie(), good}, "application/x-www-form-urlencoded",
			"a=1", 415, "unsupported_media_type", false},
		{"64 KiB + 1", []*http.Cookie{h.sessionCookie(), good}, "",
			`"` + strings.Repeat("a", 64<<10-1) + `"`, 413, "body_too_large", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Count(h.logText(), "security_rejected")
			r := h.request(tt.body, tt.cookies...)
			if tt.ctype != "" {
				r.Header.Set("Content-Type", tt.ctype)
			}
			resp, body := h.do(r)
			if resp.StatusCode != tt.status || errorCode(t, body).Code != tt.code {
				t.Errorf("got %d %s, want %d %s", resp.StatusCode, body, tt.status, tt.code)
			}
			events := strings.Count(h.logText(), "security_rejected") - before
			if tt.security && events != 1 || !tt.security && events != 0 {
				t.Errorf("%d security_rejected events, want security=%v", events, tt.security)
			}
		})
	}
	if n := len(h.upstreamSaw()); n != 0 {
		t.Errorf("upstream saw %d requests from refused calls", n)
	}
}

func TestProxyExpiredTokenAnswersTokenExpired(t *testing.T) {
	h := newHarness(t, nil)
	c := h.tokenCookie(token.TTS, 30*time.Second)
	h.clk.Advance(30 * time.Second)

	resp, body := h.do(h.request(`{}`, h.sessionCookie(), c))
	if resp.StatusCode != 401 || errorCode(t, body).Code != "token_expired" {
		t.Errorf("got %d %s, want 401 token_expired", resp.StatusCode, body)
	}
	if len(h.upstreamSaw()) != 0 {
		t.Error("an expired token was forwarded")
	}
}

func TestProxyUpstreamFailures(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		_ = ln.Close()
		h := newHarness(t, func(c *proxy.Config) { c.Upstream = "http://" + addr })
		resp, body := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))
		if resp.StatusCode != 502 || errorCode(t, body).Code != "upstream_unavailable" {
			t.Errorf("got %d %s, want 502 upstream_unavailable", resp.StatusCode, body)
		}
	})

	t.Run("no headers in time", func(t *testing.T) {
		release := make(chan struct{})
		h := newHarness(t, func(c *proxy.Config) {
			c.Client = &http.Client{Transport: token.NewTransport(100 * time.Millisecond)}
		})
		h.answer(func(http.ResponseWriter, *http.Request) { <-release })
		defer close(release)

		resp, body := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))
		if resp.StatusCode != 504 || errorCode(t, body).Code != "upstream_timeout" {
			t.Errorf("got %d %s, want 504 upstream_timeout", resp.StatusCode, body)
		}
	})
}

func TestProxyLogsOneEventPerCall(t *testing.T) {
	h := newHarness(t, nil)
	_, _ = h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))
	_, _ = h.do(h.request(`{}`))

	events := h.logs.Events(t, "proxy")
	if len(events) != 2 {
		t.Fatalf("%d proxy events, want 2", len(events))
	}
	ok := events[0]
	if ok["route"] != "/cartesia/tts/bytes" || ok["grant"] != "tts" || ok["user"] != "alice" ||
		ok["status"] != 200.0 || ok["bytes_down"] != float64(len(sectest.Audio())) ||
		ok["dur_ms"] == nil {
		t.Errorf("proxy event %v", ok)
	}
	if events[1]["status"] != 401.0 {
		t.Errorf("refused call logged %v", events[1])
	}
}

func TestNewRejectsUnsafeUpstream(t *testing.T) {
	s, _ := seal.NewRandom()
	for _, u := range []string{"", "ftp://x", "https://u:p@x", "https://x/path", "https://x?q=1"} {
		_, err := proxy.New(proxy.Config{Upstream: u, Version: "v", Sealer: s,
			Sessions: session.NewMemory(session.MemoryConfig{})})
		if err == nil {
			t.Errorf("New accepted upstream %q", u)
		}
	}
}

func TestSlowBodyIsCutOffAt408(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) { c.BodyTimeout = 100 * time.Millisecond })
	conn := h.rawPost("/cartesia/tts/bytes", token.TTS,
		"Content-Type: application/json\r\nContent-Length: 100\r\n", `{"tran`)

	resp, b := h.readRaw(conn, http.MethodPost, "/cartesia/tts/bytes")
	if resp.StatusCode != http.StatusRequestTimeout ||
		errorCode(t, b).Code != "request_timeout" {
		t.Errorf("got %d %s, want 408 request_timeout", resp.StatusCode, b)
	}
	if len(h.upstreamSaw()) != 0 {
		t.Error("a partial body was forwarded")
	}
}

func TestStreamOutlivesTheBodyDeadline(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) { c.BodyTimeout = 50 * time.Millisecond })
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, "first|")
		w.(http.Flusher).Flush()
		<-time.After(300 * time.Millisecond) // well past the body deadline
		_, _ = io.WriteString(w, "second")
	})
	resp, body := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))
	if resp.StatusCode != 200 || body != "first|second" {
		t.Errorf("got %d %q; the body deadline cut the stream", resp.StatusCode, body)
	}
}
