package security_test

import (
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/sectest"
)

// Items 34 and 35: the upstream leg of a WebSocket, and its limits end to end.

func TestItem34_UpstreamHandshakeCarriesTheTokenInAHeaderOnly(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	toks := tokenFor(e)
	offer := http.Header{
		"Sec-Websocket-Protocol":   {"evil-protocol"},
		"Sec-Websocket-Extensions": {"permessage-deflate; client_max_window_bits"},
	}

	for _, rt := range routesOf(proxy.WebSocket) {
		path := browserPath(rt) + "?model=ink-whisper&access_token=" + toks[rt.Grant] +
			"&api_key=" + url.QueryEscape(sectest.CanaryKey) + "&cartesia_version=1999-01-01"
		c, resp, err := e.dialWS(path, offer, cookies...)
		if err != nil {
			t.Errorf("%s: %v", rt.Path, err)
			continue
		}
		e.roundTrip(c, rt.Path, []byte("hi"))
		_ = c.Close(websocket.StatusNormalClosure, "")

		for _, h := range []string{"Sec-Websocket-Extensions", "Sec-Websocket-Protocol"} {
			if v := resp.Header.Get(h); v != "" {
				t.Errorf("%s: the 101 accepted %s %q", rt.Path, h, v)
			}
		}

		hs := e.fake.RequestsTo(upstreamRoute(rt))
		if len(hs) != 1 || !hs[0].WebSocket {
			t.Errorf("%s: upstream saw %d handshakes", rt.Path, len(hs))
			continue
		}
		got := hs[0]
		if auth := got.Header.Values("Authorization"); len(auth) != 1 ||
			auth[0] != "Bearer "+toks[rt.Grant] {
			t.Errorf("%s: upstream Authorization %q", rt.Path, auth)
		}
		q, _ := url.ParseQuery(got.RawQuery)
		for _, p := range []string{"access_token", "api_key", "cartesia_version"} {
			if q.Has(p) {
				t.Errorf("%s: upstream URL carries %s", rt.Path, p)
			}
		}
		for _, h := range []string{"Cookie", "Origin", "Sec-Websocket-Protocol",
			"Sec-Websocket-Extensions", "Sec-Fetch-Site", "Sec-Fetch-Mode"} {
			if v := got.Header.Values(h); len(v) > 0 {
				t.Errorf("%s: upstream handshake carries the client's %s %q", rt.Path, h, v)
			}
		}
	}
}

func TestItem35_WebSocketLimitsHoldEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	const path = "/cartesia/tts/websocket"

	// An upstream message over the relay's 1 MiB limit ends the stream with 1011, and
	// the browser never receives the oversize message.
	e.fake.Handle(sectest.RouteTTSWebSocket,
		sectest.OversizeFrame(int(proxy.DefaultUpstreamReadLimit)+1))
	c, _, err := e.dialWS(path, nil, cookies...)
	if err != nil {
		t.Fatal(err)
	}
	c.SetReadLimit(4 << 20)
	if got := e.closeOf(c, path, 10*time.Second); got.Code != websocket.StatusInternalError {
		t.Errorf("oversize upstream message: %v, want a 1011 close", got)
	}
	waitFor(t, "the relay to end", func() bool {
		return len(e.logs.Matching(t, "proxy", map[string]string{"route": path})) == 1
	})

	// Four sockets per user and grant; the fifth is refused before any dial.
	e.fake.Handle(sectest.RouteTTSWebSocket, e.fake.Default(sectest.RouteTTSWebSocket))
	dials := len(e.fake.RequestsTo(sectest.RouteTTSWebSocket))
	var open []*websocket.Conn
	for range proxy.DefaultWebSocketsPerUserGrant {
		c, _, err := e.dialWS(path, nil, cookies...)
		if err != nil {
			t.Fatalf("socket %d: %v", len(open)+1, err)
		}
		e.roundTrip(c, path, []byte("hi"))
		open = append(open, c)
	}
	_, resp, err := e.dialWS(path, nil, cookies...)
	status, code := refusalCode(t, resp, err)
	if status != http.StatusTooManyRequests || code != "rate_limited" ||
		resp.Header.Get("Retry-After") == "" {
		t.Errorf("one socket too many: %d %s Retry-After %q", status, code,
			resp.Header.Get("Retry-After"))
	}
	if n := len(e.fake.RequestsTo(sectest.RouteTTSWebSocket)) - dials; n !=
		proxy.DefaultWebSocketsPerUserGrant {
		t.Errorf("upstream saw %d handshakes, want %d", n, proxy.DefaultWebSocketsPerUserGrant)
	}

	// Another grant has its own allowance.
	if c, _, err := e.dialWS("/cartesia/stt/websocket?model=ink-whisper", nil,
		cookies...); err != nil {
		t.Errorf("an stt socket next to four tts ones: %v", err)
	} else {
		_ = c.CloseNow()
	}
	for _, c := range open {
		_ = c.Close(websocket.StatusNormalClosure, "")
	}
}

// waitFor polls cond until it holds or 10 s pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestItem34_NoDialForRefusedUpgrades runs the refusals that must happen before any
// upstream dial through the whole server, on every WebSocket route.
func TestItem34_NoDialForRefusedUpgrades(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	upstream := len(e.fake.Requests())

	for _, rt := range routesOf(proxy.WebSocket) {
		path := browserPath(rt)
		for _, tc := range []struct {
			name   string
			hdr    http.Header
			jar    []*http.Cookie
			status int
		}{
			{"foreign origin", http.Header{"Origin": {"https://evil.example"}}, cookies, 403},
			{"no origin", http.Header{"Origin": nil}, cookies, 403},
			{"cross-site", http.Header{"Sec-Fetch-Site": {"cross-site"}}, cookies, 403},
			{"no cookies", nil, nil, 401},
			{"session only", nil, cookies[:1], 401},
		} {
			_, resp, err := e.dialWS(path, tc.hdr, tc.jar...)
			if status, _ := refusalCode(t, resp, err); status != tc.status {
				t.Errorf("%s %s: %d, want %d", path, tc.name, status, tc.status)
			}
		}
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream was dialled %d times", n)
	}
}
