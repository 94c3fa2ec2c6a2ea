package proxy_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// closed is how one side saw a WebSocket end: the close code and reason it received,
// or -1 when the connection dropped without a close frame.
type closed struct {
	code   websocket.StatusCode
	reason string
}

func closeOf(err error) closed {
	var ce websocket.CloseError
	if errors.As(err, &ce) {
		return closed{ce.Code, ce.Reason}
	}
	return closed{code: -1}
}

// wsUpstream makes the fake upstream a WebSocket server: each accepted connection runs
// serve, and how it ended (what the proxy told it) is reported on ends.
type wsUpstream struct {
	ends chan closed
}

func (h *harness) wsUpstream(serve func(ctx context.Context, c *websocket.Conn) error) *wsUpstream {
	u := &wsUpstream{ends: make(chan closed, 64)}
	h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(8 << 20)
		select {
		case u.ends <- closeOf(serve(context.Background(), c)):
		default: // nobody is counting (the goroutine leak test opens many)
		}
	})
	return u
}

// echo answers each text message with "echo:" and the message, and each binary message
// with the same bytes reversed, until the connection ends.
func echo(ctx context.Context, c *websocket.Conn) error {
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return err
		}
		if typ == websocket.MessageText {
			msg = append([]byte("echo:"), msg...)
		} else {
			for i, j := 0, len(msg)-1; i < j; i, j = i+1, j-1 {
				msg[i], msg[j] = msg[j], msg[i]
			}
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return err
		}
	}
}

// next waits for the upstream side of the next connection to end.
func (u *wsUpstream) next(t *testing.T) closed {
	t.Helper()
	select {
	case e := <-u.ends:
		return e
	case <-time.After(15 * time.Second):
		t.Fatal("the upstream connection did not end")
		return closed{}
	}
}

// dialWS opens a WebSocket to the proxy as a browser on the right origin would, unless
// hdr says otherwise.
func (h *harness) dialWS(path string, hdr http.Header, cookies ...*http.Cookie) (
	*websocket.Conn, *http.Response, error) {
	if hdr == nil {
		hdr = http.Header{"Origin": {h.origin}}
	}
	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.String())
	}
	if len(parts) > 0 {
		hdr.Set("Cookie", strings.Join(parts, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(h.front.URL, "http")+path,
		&websocket.DialOptions{HTTPHeader: hdr, HTTPClient: h.client})
}

// mustDialWS opens a socket that must succeed, closed when the test ends.
func (h *harness) mustDialWS(path string, grant token.Grant) *websocket.Conn {
	h.t.Helper()
	c, resp, err := h.dialWS(path, nil, h.sessionCookie(), h.tokenCookie(grant, time.Minute))
	if err != nil {
		body := ""
		if resp != nil {
			b, _ := io.ReadAll(resp.Body)
			body = fmt.Sprintf("%d %s", resp.StatusCode, b)
		}
		h.t.Fatalf("dial %s: %v %s", path, err, body)
	}
	h.t.Cleanup(func() { _ = c.CloseNow() })
	return c
}

// refusal reads a failed dial's JSON error.
func refusal(t *testing.T, resp *http.Response, err error) (int, string) {
	t.Helper()
	if err == nil {
		t.Fatal("the upgrade was accepted")
	}
	if resp == nil {
		t.Fatalf("no HTTP answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, errorCode(t, string(b)).Code
}

func readWithin(t *testing.T, c *websocket.Conn) (websocket.MessageType, []byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return c.Read(ctx)
}

func writeWithin(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, typ, msg); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// expectClose reads until the connection ends and returns how.
func expectClose(t *testing.T, c *websocket.Conn) closed {
	t.Helper()
	for {
		_, _, err := readWithin(t, c)
		if err != nil {
			return closeOf(err)
		}
	}
}

func TestWebSocketRelaysEachRouteBothWays(t *testing.T) {
	tests := []struct {
		name      string
		path      string
		grant     token.Grant
		wantPath  string
		wantQuery string
	}{
		{"tts", "/cartesia/tts/websocket?cartesia_version=1999-01-01&access_token=x" +
			"&cartesia_client=js", token.TTS, "/tts/websocket", ""},
		{"stt", "/cartesia/stt/websocket?model=ink-whisper&encoding=pcm_s16le" +
			"&sample_rate=16000&language=en&keyterm=a&keyterm=b&access_token=x&api_key=y" +
			"&cartesia_version=1999-01-01&evil=1", token.STT, "/stt/websocket",
			"encoding=pcm_s16le&keyterm=a&keyterm=b&language=en&model=ink-whisper" +
				"&sample_rate=16000"},
		{"stt turns", "/cartesia/stt/turns/websocket?model=ink-2&encoding=pcm_s16le" +
			"&sample_rate=16000&turn_end_threshold=0.2&min_volume=0.1&api_key=y",
			token.STT, "/stt/turns/websocket",
			"encoding=pcm_s16le&model=ink-2&sample_rate=16000&turn_end_threshold=0.2"},
		{"agent", "/cartesia/agents/stream/agent_7-X?access_token=x", token.Agent,
			"/agents/stream/agent_7-X", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			up := h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
				// Upstream speaks first, as Cartesia's turns endpoint does.
				if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"connected"}`)); err != nil {
					return err
				}
				return echo(ctx, c)
			})
			hdr := http.Header{"Origin": {h.origin}, "Authorization": {"Bearer attacker"},
				"Sec-WebSocket-Protocol": {"evil-proto"}, "X-Forwarded-For": {"10.0.0.1"},
				"Sec-WebSocket-Extensions": {"permessage-deflate; client_max_window_bits"}}
			c, resp, err := h.dialWS(tt.path, hdr, h.sessionCookie(),
				h.tokenCookie(tt.grant, time.Minute))
			if err != nil {
				t.Fatalf("dial: %v", err)
			}
			defer c.CloseNow()
			if ext := resp.Header.Get("Sec-WebSocket-Extensions"); ext != "" {
				t.Errorf("the proxy accepted compression: %q", ext)
			}
			if p := resp.Header.Get("Sec-WebSocket-Protocol"); p != "" {
				t.Errorf("the proxy chose subprotocol %q", p)
			}

			typ, msg, err := readWithin(t, c)
			if err != nil || typ != websocket.MessageText || string(msg) != `{"type":"connected"}` {
				t.Fatalf("first upstream message: %v %q %v", typ, msg, err)
			}
			writeWithin(t, c, websocket.MessageText, []byte(`{"hello":1}`))
			typ, msg, err = readWithin(t, c)
			if err != nil || typ != websocket.MessageText || string(msg) != `echo:{"hello":1}` {
				t.Errorf("text round trip: %v %q %v", typ, msg, err)
			}
			writeWithin(t, c, websocket.MessageBinary, []byte{1, 2, 3, 0xff})
			typ, msg, err = readWithin(t, c)
			if err != nil || typ != websocket.MessageBinary || string(msg) != "\xff\x03\x02\x01" {
				t.Errorf("binary round trip: %v %q %v", typ, msg, err)
			}

			if err := c.Close(websocket.StatusNormalClosure, "bye"); err != nil {
				t.Errorf("close: %v", err)
			}
			if got := up.next(t); got != (closed{websocket.StatusNormalClosure, "bye"}) {
				t.Errorf("upstream saw the end as %+v, want 1000 bye", got)
			}

			hs := h.upstreamSaw()
			if len(hs) != 1 {
				t.Fatalf("upstream saw %d handshakes", len(hs))
			}
			checkHandshake(t, hs[0], tt.wantPath, tt.wantQuery)
		})
	}
}

// checkHandshake is security item 34: the token in a header and nowhere else, only the
// allowlisted query, nothing of the client's credentials or extensions.
func checkHandshake(t *testing.T, got sectest.Request, path, query string) {
	t.Helper()
	if got.Method != http.MethodGet || got.Path != path || got.RawQuery != query {
		t.Errorf("upstream handshake %s %s?%s, want GET %s?%s", got.Method, got.Path,
			got.RawQuery, path, query)
	}
	if a := got.Header.Values("Authorization"); len(a) != 1 || a[0] != "Bearer "+upstreamToken {
		t.Errorf("upstream Authorization %q", a)
	}
	if v := got.Header.Get("Cartesia-Version"); v != "2026-03-01" {
		t.Errorf("upstream Cartesia-Version %q", v)
	}
	for _, name := range []string{"Cookie", "Origin", "Sec-WebSocket-Protocol",
		"Sec-WebSocket-Extensions", "X-Forwarded-For"} {
		if v := got.Header.Values(name); len(v) > 0 {
			t.Errorf("upstream handshake carried %s: %q", name, v)
		}
	}
	for _, bad := range []string{"access_token", "api_key", "cartesia_version", "ctok_"} {
		if strings.Contains(got.RawQuery, bad) {
			t.Errorf("upstream query %q contains %s", got.RawQuery, bad)
		}
	}
}

func TestWebSocketUpstreamErrorEventPassesThrough(t *testing.T) {
	h := newHarness(t, nil)
	errEvent := `{"type":"error","done":true,"status_code":400,"error_code":"model_not_found",` +
		`"title":"Invalid model","message":"no such model","request_id":"r-1","context_id":"c1"}`
	h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
		if _, _, err := c.Read(ctx); err != nil {
			return err
		}
		if err := c.Write(ctx, websocket.MessageText, []byte(errEvent)); err != nil {
			return err
		}
		return c.Close(websocket.StatusNormalClosure, "")
	})
	c := h.mustDialWS("/cartesia/tts/websocket", token.TTS)

	writeWithin(t, c, websocket.MessageText, []byte(`{"context_id":"c1","model_id":"bad"}`))
	_, msg, err := readWithin(t, c)
	if err != nil || string(msg) != errEvent {
		t.Fatalf("got %q %v, want the error event unchanged", msg, err)
	}
	if got := expectClose(t, c); got.code != websocket.StatusNormalClosure {
		t.Errorf("client saw %+v after the error event, want 1000", got)
	}
}

func TestWebSocketUpstreamCloseReachesTheBrowser(t *testing.T) {
	tests := []struct {
		name   string
		end    func(c *websocket.Conn)
		want   closed
		reason string // when set, the reason must contain it instead of matching want
	}{
		{"idle close passes", func(c *websocket.Conn) {
			_ = c.Close(websocket.StatusNormalClosure, "connection idle timeout")
		}, closed{1000, "connection idle timeout"}, ""},
		{"going away passes", func(c *websocket.Conn) {
			_ = c.Close(websocket.StatusGoingAway, "restart")
		}, closed{1001, "restart"}, ""},
		{"application code passes", func(c *websocket.Conn) {
			_ = c.Close(4001, "call ended by agent")
		}, closed{4001, "call ended by agent"}, ""},
		{"policy passes", func(c *websocket.Conn) {
			_ = c.Close(websocket.StatusPolicyViolation, "too many")
		}, closed{1008, "too many"}, ""},
		{"no status becomes 1000", func(c *websocket.Conn) {
			_ = c.Close(websocket.StatusNoStatusRcvd, "")
		}, closed{1000, ""}, ""},
		{"protocol error becomes 1011", func(c *websocket.Conn) {
			_ = c.Close(websocket.StatusProtocolError, "bad frame")
		}, closed{code: 1011}, "1002"},
		{"abrupt drop becomes 1011", func(c *websocket.Conn) {
			_ = c.CloseNow()
		}, closed{code: 1011}, "upstream connection lost"},
		// An upstream that quotes the credential in its close reason must not hand the
		// token to page JavaScript (CloseEvent.reason); found by the second attack round.
		{"a quoted token is scrubbed", func(c *websocket.Conn) {
			_ = c.Close(4001, "bad "+upstreamToken+" from Bearer "+upstreamToken)
		}, closed{4001, "bad [REDACTED] from Bearer [REDACTED]"}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
				if _, _, err := c.Read(ctx); err != nil {
					return err
				}
				tt.end(c)
				return nil
			})
			c := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
			writeWithin(t, c, websocket.MessageText, []byte("{}"))

			got := expectClose(t, c)
			if tt.reason != "" {
				if got.code != tt.want.code || !strings.Contains(got.reason, tt.reason) {
					t.Errorf("client saw %+v, want %d with %q", got, tt.want.code, tt.reason)
				}
				return
			}
			if got != tt.want {
				t.Errorf("client saw %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWebSocketBrowserCloseReachesUpstream(t *testing.T) {
	tests := []struct {
		name string
		end  func(c *websocket.Conn)
		want closed
	}{
		{"normal", func(c *websocket.Conn) { _ = c.Close(1000, "done") }, closed{1000, "done"}},
		{"navigating away", func(c *websocket.Conn) { _ = c.Close(1001, "") }, closed{1001, ""}},
		{"application code", func(c *websocket.Conn) { _ = c.Close(4000, "user hung up") },
			closed{4000, "user hung up"}},
		{"tab killed", func(c *websocket.Conn) { _ = c.CloseNow() },
			closed{1001, "client went away"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			up := h.wsUpstream(echo)
			c := h.mustDialWS("/cartesia/stt/websocket?model=ink-whisper", token.STT)
			writeWithin(t, c, websocket.MessageBinary, []byte{1, 2})
			if _, _, err := readWithin(t, c); err != nil {
				t.Fatal(err)
			}

			tt.end(c)
			if got := up.next(t); got != tt.want {
				t.Errorf("upstream saw %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestWebSocketOriginMatrixRefusedBeforeDial(t *testing.T) {
	h := newHarness(t, nil)
	h.wsUpstream(echo)
	host := strings.TrimPrefix(h.origin, "http://")
	_, port, _ := net.SplitHostPort(host)
	otherPort := "1"
	if port == "1" {
		otherPort = "2"
	}

	tests := []struct {
		name string
		hdr  http.Header
	}{
		{"missing", http.Header{}},
		{"null", http.Header{"Origin": {"null"}}},
		{"evil", http.Header{"Origin": {"https://evil.example"}}},
		{"suffix", http.Header{"Origin": {h.origin + ".evil.com"}}},
		{"other scheme", http.Header{"Origin": {"https://" + host}}},
		{"other port", http.Header{"Origin": {"http://127.0.0.1:" + otherPort}}},
		{"trailing slash", http.Header{"Origin": {h.origin + "/"}}},
		{"upper case", http.Header{"Origin": {strings.ToUpper(h.origin)}}},
		{"two origins", http.Header{"Origin": {h.origin, "https://evil.example"}}},
		{"cross-site fetch", http.Header{"Origin": {h.origin}, "Sec-Fetch-Site": {"cross-site"}}},
		{"same-site fetch", http.Header{"Origin": {h.origin}, "Sec-Fetch-Site": {"same-site"}}},
		{"not a websocket fetch", http.Header{"Origin": {h.origin},
			"Sec-Fetch-Mode": {"navigate"}}},
		{"websocket mode repeated", http.Header{"Origin": {h.origin},
			"Sec-Fetch-Mode": {"websocket", "navigate"}}},
		{"websocket mode twice", http.Header{"Origin": {h.origin},
			"Sec-Fetch-Mode": {"websocket", "websocket"}}},
		{"same-origin site repeated", http.Header{"Origin": {h.origin},
			"Sec-Fetch-Site": {"same-origin", "cross-site"}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := strings.Count(h.logText(), "ws_origin_rejected")
			status, code := h.refused("/cartesia/tts/websocket", tt.hdr,
				h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
			if status != http.StatusForbidden || code != "csrf_rejected" {
				t.Errorf("got %d %s, want 403 csrf_rejected", status, code)
			}
			if n := strings.Count(h.logText(), "ws_origin_rejected") - before; n != 1 {
				t.Errorf("%d ws_origin_rejected events, want 1", n)
			}
		})
	}
	if n := len(h.upstreamSaw()); n != 0 {
		t.Errorf("upstream was dialled %d times for refused origins", n)
	}
}

// refused dials a socket that must be refused and returns the status and error code.
func (h *harness) refused(path string, hdr http.Header, cookies ...*http.Cookie) (int, string) {
	h.t.Helper()
	c, resp, err := h.dialWS(path, hdr, cookies...)
	if c != nil {
		_ = c.CloseNow()
	}
	return refusal(h.t, resp, err)
}

func TestWebSocketAuthorizationBeforeDial(t *testing.T) {
	h := newHarness(t, nil)
	h.wsUpstream(echo)
	ttsOnly, _ := h.sessions.Create(session.User{Name: "bob", Grants: []token.Grant{token.TTS}})
	bobSTT, _ := h.sealer.Seal(ttsOnly.ID, token.Token{Value: token.NewValue(upstreamToken),
		Grant: token.STT, ExpiresAt: h.clk.Now().Add(time.Minute)})
	ttsAsSTT := h.tokenCookie(token.TTS, time.Minute)
	ttsAsSTT.Name = seal.CookieName(token.STT)
	expiring := h.tokenCookie(token.STT, time.Second)

	tests := []struct {
		name    string
		cookies []*http.Cookie
		status  int
		code    string
	}{
		{"no cookies", nil, 401, "no_session"},
		{"no session", []*http.Cookie{h.tokenCookie(token.STT, time.Minute)}, 401, "no_session"},
		{"forged session", []*http.Cookie{{Name: session.CookieName, Value: "forged"},
			h.tokenCookie(token.STT, time.Minute)}, 401, "no_session"},
		{"no token cookie", []*http.Cookie{h.sessionCookie()}, 401, "no_token"},
		{"another grant's cookie", []*http.Cookie{h.sessionCookie(), ttsAsSTT}, 401, "no_token"},
		{"raw token", []*http.Cookie{h.sessionCookie(),
			{Name: seal.CookieName(token.STT), Value: upstreamToken}}, 401, "no_token"},
		{"expired token", []*http.Cookie{h.sessionCookie(), expiring}, 401, "token_expired"},
		{"user without the grant", []*http.Cookie{{Name: session.CookieName, Value: ttsOnly.ID},
			{Name: seal.CookieName(token.STT), Value: bobSTT}}, 403, "grant_forbidden"},
	}
	h.clk.Advance(2 * time.Second)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := h.refused("/cartesia/stt/websocket?model=ink-whisper",
				nil, tt.cookies...)
			if status != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s", status, code, tt.status, tt.code)
			}
		})
	}
	if n := len(h.upstreamSaw()); n != 0 {
		t.Errorf("upstream was dialled %d times for refused upgrades", n)
	}
}

func TestWebSocketBadRequestsRefusedBeforeDial(t *testing.T) {
	h := newHarness(t, nil)
	h.wsUpstream(echo)
	tests := []struct {
		name   string
		path   string
		grant  token.Grant
		status int
		code   string
	}{
		{"agent id with a dot", "/cartesia/agents/stream/a.b", token.Agent, 400, "bad_request"},
		{"agent id with an escaped slash", "/cartesia/agents/stream/a%2Fb", token.Agent, 400,
			"bad_request"},
		{"agent id with escaped dots", "/cartesia/agents/stream/%2e%2e", token.Agent, 400,
			"bad_request"},
		{"agent id too long", "/cartesia/agents/stream/" + strings.Repeat("a", 129),
			token.Agent, 400, "bad_request"},
		{"repeated model", "/cartesia/stt/websocket?model=a&model=b", token.STT, 400,
			"bad_request"},
		{"too many key terms", "/cartesia/stt/websocket?model=a" +
			strings.Repeat("&keyterm=k", 101), token.STT, 400, "bad_request"},
		{"huge query", "/cartesia/stt/websocket?model=" + strings.Repeat("a", 9000),
			token.STT, 400, "bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := h.refused(tt.path, nil, h.sessionCookie(),
				h.tokenCookie(tt.grant, time.Minute))
			if status != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s", status, code, tt.status, tt.code)
			}
		})
	}

	t.Run("not an upgrade", func(t *testing.T) {
		r, _ := http.NewRequest(http.MethodGet, h.front.URL+"/cartesia/tts/websocket", nil)
		r.Header.Set("Origin", h.origin)
		r.AddCookie(h.sessionCookie())
		r.AddCookie(h.tokenCookie(token.TTS, time.Minute))
		resp, body := h.do(r)
		if resp.StatusCode != http.StatusUpgradeRequired ||
			errorCode(t, body).Code != "upgrade_required" {
			t.Errorf("got %d %s, want 426 upgrade_required", resp.StatusCode, body)
		}
	})
	if n := len(h.upstreamSaw()); n != 0 {
		t.Errorf("upstream was dialled %d times for bad requests", n)
	}
}

func TestWebSocketUpstreamRefusalBecomesJSONBeforeUpgrade(t *testing.T) {
	tests := []struct {
		status     int
		retryAfter string
		wantStatus int
		wantCode   string
	}{
		{401, "", 401, "token_expired"},
		{403, "", 403, "grant_forbidden"},
		{429, "7", 429, "rate_limited"},
		{404, "", 502, "upstream_error"},
		{500, "", 502, "upstream_error"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status), func(t *testing.T) {
			h := newHarness(t, nil)
			h.answerUnread(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, `{"error_code":"x","title":"Refused","message":"no"}`)
			})
			_, resp, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
				h.tokenCookie(token.TTS, time.Minute))
			status, code := refusal(t, resp, err)
			if status != tt.wantStatus || code != tt.wantCode {
				t.Errorf("got %d %s, want %d %s", status, code, tt.wantStatus, tt.wantCode)
			}
			if got := resp.Header.Get("Retry-After"); got != tt.retryAfter {
				t.Errorf("Retry-After %q, want %q", got, tt.retryAfter)
			}
		})
	}

	t.Run("unreachable", func(t *testing.T) {
		ln, _ := net.Listen("tcp", "127.0.0.1:0")
		addr := ln.Addr().String()
		_ = ln.Close()
		h := newHarness(t, func(c *proxy.Config) { c.Upstream = "http://" + addr })
		status, code := h.refused("/cartesia/tts/websocket", nil,
			h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
		if status != 502 || code != "upstream_unavailable" {
			t.Errorf("got %d %s, want 502 upstream_unavailable", status, code)
		}
	})

	t.Run("dial timeout", func(t *testing.T) {
		release := make(chan struct{})
		h := newHarness(t, func(c *proxy.Config) {
			c.WebSocket.DialTimeout = 100 * time.Millisecond
		})
		h.answerUnread(func(http.ResponseWriter, *http.Request) { <-release })
		defer close(release)
		status, code := h.refused("/cartesia/tts/websocket", nil,
			h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
		if status != 504 || code != "upstream_timeout" {
			t.Errorf("got %d %s, want 504 upstream_timeout", status, code)
		}
	})
}

func TestWebSocketConcurrencyCapPerUserAndGrant(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) { c.WebSocket.PerUserGrant = 2 })
	h.wsUpstream(echo)

	first := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
	h.mustDialWS("/cartesia/tts/websocket", token.TTS)

	_, resp, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
		h.tokenCookie(token.TTS, time.Minute))
	status, code := refusal(t, resp, err)
	if status != http.StatusTooManyRequests || code != "rate_limited" ||
		resp.Header.Get("Retry-After") == "" {
		t.Errorf("third socket: %d %s Retry-After %q, want 429 rate_limited with Retry-After",
			status, code, resp.Header.Get("Retry-After"))
	}
	if n := len(h.upstreamSaw()); n != 2 {
		t.Errorf("upstream saw %d dials, want 2 (none for the refused socket)", n)
	}

	// Another grant has its own slots.
	h.mustDialWS("/cartesia/stt/websocket?model=ink-whisper", token.STT)

	// Closing one frees its slot.
	_ = first.Close(websocket.StatusNormalClosure, "")
	waitFor(t, "the slot to free", func() bool { return h.proxy.OpenWebSockets() == 2 })
	h.mustDialWS("/cartesia/tts/websocket", token.TTS)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestEndSessionClosesThatSessionsSockets(t *testing.T) {
	h := newHarness(t, nil)
	up := h.wsUpstream(echo)
	a1 := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
	a2 := h.mustDialWS("/cartesia/agents/stream/a1", token.Agent)

	other, _ := h.sessions.Create(session.User{Name: "bob", Grants: token.Grants()})
	otherTok, _ := h.sealer.Seal(other.ID, token.Token{Value: token.NewValue(upstreamToken),
		Grant: token.TTS, ExpiresAt: h.clk.Now().Add(time.Minute)})
	b, _, err := h.dialWS("/cartesia/tts/websocket", nil,
		&http.Cookie{Name: session.CookieName, Value: other.ID},
		&http.Cookie{Name: seal.CookieName(token.TTS), Value: otherTok})
	if err != nil {
		t.Fatal(err)
	}
	defer b.CloseNow()
	waitFor(t, "three relays", func() bool { return h.proxy.OpenWebSockets() == 3 })
	// A slot is taken before the relay is filed under its session; one echo each proves
	// both relays run, and a relay is filed before it runs.
	for _, c := range []*websocket.Conn{a1, a2} {
		writeWithin(t, c, websocket.MessageText, []byte("ping"))
		if _, msg, err := readWithin(t, c); err != nil || string(msg) != "echo:ping" {
			t.Fatalf("echo before sign-out: %q %v", msg, err)
		}
	}

	if n := h.proxy.EndSession(h.sess.ID); n != 2 {
		t.Errorf("EndSession closed %d sockets, want 2", n)
	}
	for _, c := range []*websocket.Conn{a1, a2} {
		if got := expectClose(t, c); got != (closed{websocket.StatusPolicyViolation, "session ended"}) {
			t.Errorf("browser saw %+v, want 1008 session ended", got)
		}
	}
	for range 2 {
		if got := up.next(t); got != (closed{websocket.StatusNormalClosure, "session ended"}) {
			t.Errorf("upstream saw %+v, want 1000 session ended", got)
		}
	}

	writeWithin(t, b, websocket.MessageText, []byte("still here"))
	if _, msg, err := readWithin(t, b); err != nil || string(msg) != "echo:still here" {
		t.Errorf("the other session's socket: %q %v", msg, err)
	}
}

func TestWebSocketOpenedForADeletedSessionIsEnded(t *testing.T) {
	h := newHarness(t, nil)
	h.wsUpstream(echo)
	// A slow upstream handshake gives sign-out time to happen between the checks and
	// the relay's registration.
	signedOut := make(chan struct{})
	h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
		<-signedOut
		c, err := websocket.Accept(w, r, nil)
		if err == nil {
			_ = echo(context.Background(), c)
		}
	})
	done := make(chan closed, 1)
	go func() {
		c, _, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
			h.tokenCookie(token.TTS, time.Minute))
		if err != nil {
			done <- closed{code: -2}
			return
		}
		done <- expectClose(t, c)
	}()
	waitFor(t, "the dial", func() bool { return len(h.upstreamSaw()) == 1 })
	_ = h.sessions.Delete(h.sess.ID)
	h.proxy.EndSession(h.sess.ID)
	close(signedOut)

	if got := <-done; got != (closed{websocket.StatusPolicyViolation, "session ended"}) {
		t.Errorf("socket opened across sign-out ended with %+v, want 1008 session ended", got)
	}
}

func TestWebSocketMessageSizeLimits(t *testing.T) {
	t.Run("client message over 256 KiB closes the client with 1009", func(t *testing.T) {
		h := newHarness(t, nil)
		up := h.wsUpstream(echo)
		c := h.mustDialWS("/cartesia/stt/websocket?model=ink-whisper", token.STT)
		c.SetReadLimit(1 << 20)
		writeWithin(t, c, websocket.MessageBinary, make([]byte, proxy.DefaultClientReadLimit))
		if _, msg, err := readWithin(t, c); err != nil || len(msg) != proxy.DefaultClientReadLimit {
			t.Fatalf("a message at the limit: %d bytes, %v", len(msg), err)
		}

		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = c.Write(ctx, websocket.MessageBinary, make([]byte, proxy.DefaultClientReadLimit+1))
		if got := expectClose(t, c); got.code != websocket.StatusMessageTooBig {
			t.Errorf("client saw %+v, want 1009", got)
		}
		if got := up.next(t); got.code != websocket.StatusGoingAway {
			t.Errorf("upstream saw %+v, want 1001", got)
		}
	})

	t.Run("upstream message over 1 MiB closes the client with 1011", func(t *testing.T) {
		h := newHarness(t, nil)
		h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
			// A TTS chunk event at the limit passes; one byte more does not.
			if err := c.Write(ctx, websocket.MessageText,
				[]byte(strings.Repeat("A", proxy.DefaultUpstreamReadLimit))); err != nil {
				return err
			}
			if err := c.Write(ctx, websocket.MessageText,
				[]byte(strings.Repeat("A", proxy.DefaultUpstreamReadLimit+1))); err != nil {
				return err
			}
			return echo(ctx, c)
		})
		c, _, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
			h.tokenCookie(token.TTS, time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		defer c.CloseNow()
		c.SetReadLimit(4 << 20)
		if _, msg, err := readWithin(t, c); err != nil || len(msg) != proxy.DefaultUpstreamReadLimit {
			t.Fatalf("a message at the limit: %d bytes, %v", len(msg), err)
		}
		if got := expectClose(t, c); got.code != websocket.StatusInternalError {
			t.Errorf("client saw %+v, want 1011", got)
		}
	})
}

func TestWebSocketMessageFloodClosesWith1008(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) {
		c.WebSocket.MessageRate, c.WebSocket.MessageBurst = 10, 20
	})
	up := h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
		for {
			if _, _, err := c.Read(ctx); err != nil {
				return err
			}
		}
	})
	c := h.mustDialWS("/cartesia/stt/websocket?model=ink-whisper", token.STT)
	// The harness clock stands still, so no tokens refill: the 21st message is over.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 21 {
		if err := c.Write(ctx, websocket.MessageBinary, []byte{0}); err != nil {
			break
		}
	}
	if got := expectClose(t, c); got != (closed{websocket.StatusPolicyViolation,
		"message rate exceeded"}) {
		t.Errorf("client saw %+v, want 1008 message rate exceeded", got)
	}
	if got := up.next(t); got.code != websocket.StatusGoingAway {
		t.Errorf("upstream saw %+v, want 1001", got)
	}
}

func TestWebSocketDeadUpstreamFoundByPing(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) {
		c.WebSocket.PingInterval, c.WebSocket.PingTimeout = 50*time.Millisecond, 50*time.Millisecond
	})
	stall := make(chan struct{})
	defer close(stall)
	// An upstream that never reads never answers a ping: a stalled or half-open peer.
	h.wsUpstream(func(context.Context, *websocket.Conn) error { <-stall; return nil })
	c := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
	if got := expectClose(t, c); got != (closed{websocket.StatusInternalError,
		"upstream not responding"}) {
		t.Errorf("client saw %+v, want 1011 upstream not responding", got)
	}
}

func TestWebSocketIdleRelayIsClosed(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) { c.WebSocket.Idle = 100 * time.Millisecond })
	up := h.wsUpstream(echo)
	c := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
	if got := expectClose(t, c); got != (closed{websocket.StatusGoingAway, "idle timeout"}) {
		t.Errorf("client saw %+v, want 1001 idle timeout", got)
	}
	if got := up.next(t); got != (closed{websocket.StatusGoingAway, "idle timeout"}) {
		t.Errorf("upstream saw %+v, want 1001 idle timeout", got)
	}
}

func TestWebSocketClientThatStopsReadingIsDropped(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) { c.WebSocket.WriteTimeout = 100 * time.Millisecond })
	h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
		go func() { _, _, _ = c.Read(ctx) }() // to see the close frame
		chunk := make([]byte, 64<<10)
		for range 2000 { // at most 125 MiB: far beyond any socket buffer
			wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := c.Write(wctx, websocket.MessageBinary, chunk)
			cancel()
			if err != nil {
				break
			}
		}
		<-ctx.Done()
		return nil
	})
	h.mustDialWS("/cartesia/tts/websocket", token.TTS) // and never read
	waitFor(t, "the relay to give up on the client", func() bool {
		return h.proxy.OpenWebSockets() == 0
	})
}

func TestWebSocketRelaysLeaveNoGoroutines(t *testing.T) {
	h := newHarness(t, nil)
	h.wsUpstream(echo)
	cycle := func(i int) {
		c := h.mustDialWS("/cartesia/tts/websocket", token.TTS)
		writeWithin(t, c, websocket.MessageText, []byte("x"))
		if _, _, err := readWithin(t, c); err != nil {
			t.Fatal(err)
		}
		if i%2 == 0 {
			_ = c.Close(websocket.StatusNormalClosure, "")
		} else {
			_ = c.CloseNow()
		}
	}
	cycle(0) // warm up pools and timers
	waitFor(t, "the warm-up relay to end", func() bool { return h.proxy.OpenWebSockets() == 0 })
	before := runtime.NumGoroutine()

	const cycles = 100
	for i := range cycles {
		cycle(i)
	}
	waitFor(t, "every relay to end", func() bool { return h.proxy.OpenWebSockets() == 0 })

	// Allow a little slack for runtime and net/http bookkeeping goroutines; a leak of one
	// goroutine per relay would show as about a hundred.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before+5 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			n := runtime.Stack(buf, true)
			t.Fatalf("%d goroutines after %d relays, %d before:\n%s", runtime.NumGoroutine(),
				cycles, before, buf[:n])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWebSocketLogsOneEventPerStream(t *testing.T) {
	h := newHarness(t, nil)
	up := h.wsUpstream(echo)
	c := h.mustDialWS("/cartesia/stt/websocket?model=ink-whisper&keyterm=SecretTerm"+
		"&access_token=ctok_CANARY_query", token.STT)
	writeWithin(t, c, websocket.MessageBinary, []byte{1, 2, 3})
	if _, _, err := readWithin(t, c); err != nil {
		t.Fatal(err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	up.next(t)
	waitFor(t, "the relay to end", func() bool { return h.proxy.OpenWebSockets() == 0 })
	waitFor(t, "the log event", func() bool { return strings.Contains(h.logText(), `"status":101`) })

	events := h.logs.Events(t, "proxy")
	if len(events) != 1 {
		t.Fatalf("%d proxy events, want 1", len(events))
	}
	e := events[0]
	want := map[string]any{"route": "/cartesia/stt/websocket", "grant": "stt", "user": "alice",
		"status": 101.0, "close_client": 1000.0, "close_upstream": 1000.0,
		"bytes_up": 3.0, "bytes_down": 3.0}
	for k, v := range want {
		if e[k] != v {
			t.Errorf("log %s = %v, want %v (event %v)", k, e[k], v, e)
		}
	}
	if e["dur_ms"] == nil {
		t.Error("no dur_ms")
	}
	for _, secret := range []string{"SecretTerm", "keyterm", "access_token"} {
		if strings.Contains(h.logText(), secret) {
			t.Errorf("the log contains %q", secret)
		}
	}
}

// agentSession signs in a user whose users-file agent list is agents, and returns cookies
// for its session and a live agent token.
func (h *harness) agentSession(name string, agents []string) []*http.Cookie {
	h.t.Helper()
	s, err := h.sessions.Create(session.User{Name: name, Grants: token.Grants(),
		MaxTTL: time.Hour, Agents: agents})
	if err != nil {
		h.t.Fatal(err)
	}
	v, err := h.sealer.Seal(s.ID, token.Token{Value: token.NewValue(upstreamToken),
		Grant: token.Agent, ExpiresAt: h.clk.Now().Add(time.Minute)})
	if err != nil {
		h.t.Fatal(err)
	}
	return []*http.Cookie{{Name: session.CookieName, Value: s.ID},
		{Name: seal.CookieName(token.Agent), Value: v}}
}

// agentForbiddenEvents returns "user/agent" for each agent_forbidden event logged so far.
func (h *harness) agentForbiddenEvents() []string {
	h.t.Helper()
	var ids []string
	for _, ev := range h.logs.Matching(h.t, "security_rejected",
		map[string]string{"reason": "agent_forbidden"}) {
		ids = append(ids, ev.Str("user")+"/"+ev.Str("agent"))
	}
	return ids
}

func TestAgentListRefusesOtherAgentsBeforeDial(t *testing.T) {
	h := newHarness(t, nil)
	h.wsUpstream(echo)
	carol := h.agentSession("carol", []string{"a1", "support_2"})
	nobody := h.agentSession("dave", nil)

	tests := []struct {
		name    string
		cookies []*http.Cookie
		agent   string
		status  int
		code    string
	}{
		{"unlisted id", carol, "a2", 403, "grant_forbidden"},
		{"listed id with a suffix", carol, "a1x", 403, "grant_forbidden"},
		{"listed id in another case", carol, "A1", 403, "grant_forbidden"},
		{"star as an id", carol, "*", 400, "bad_request"},
		{"malformed id is a bad request first", carol, "a.b", 400, "bad_request"},
		{"user without an agent list", nobody, "a1", 403, "grant_forbidden"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			status, code := h.refused("/cartesia/agents/stream/"+tt.agent, nil, tt.cookies...)
			if status != tt.status || code != tt.code {
				t.Errorf("got %d %s, want %d %s", status, code, tt.status, tt.code)
			}
		})
	}

	if n := len(h.upstreamSaw()); n != 0 {
		t.Errorf("upstream saw %d handshakes for forbidden agents", n)
	}
	want := []string{"carol/a2", "carol/a1x", "carol/A1", "dave/a1"}
	if got := h.agentForbiddenEvents(); !slices.Equal(got, want) {
		t.Errorf("agent_forbidden events %q, want %q", got, want)
	}
}

func TestAgentListAdmitsListedAgents(t *testing.T) {
	h := newHarness(t, nil)
	up := h.wsUpstream(echo)
	carol := h.agentSession("carol", []string{"a1", "support_2"})

	c, _, err := h.dialWS("/cartesia/agents/stream/support_2", nil, carol...)
	if err != nil {
		t.Fatalf("dial a listed agent: %v", err)
	}
	writeWithin(t, c, websocket.MessageText, []byte("hi"))
	if _, msg, err := readWithin(t, c); err != nil || string(msg) != "echo:hi" {
		t.Fatalf("echo: %q %v", msg, err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")
	up.next(t)

	hs := h.upstreamSaw()
	if len(hs) != 1 {
		t.Fatalf("upstream saw %d handshakes, want 1", len(hs))
	}
	checkHandshake(t, hs[0], "/agents/stream/support_2", "")
	if got := h.agentForbiddenEvents(); len(got) != 0 {
		t.Errorf("agent_forbidden events for a listed agent: %q", got)
	}
}
