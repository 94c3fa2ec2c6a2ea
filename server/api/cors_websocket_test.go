package api_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/sectest"
)

// dialFrom opens a proxied WebSocket with exactly the given Origin and Fetch Metadata, as
// a page on another origin would.
func dialFrom(h *harness, path string, hdr http.Header, cookies ...*http.Cookie) (
	*websocket.Conn, *http.Response, error) {
	hdr = hdr.Clone()
	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.String())
	}
	hdr.Set("Cookie", strings.Join(parts, "; "))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+h.host+path,
		&websocket.DialOptions{HTTPHeader: hdr, HTTPClient: h.rec.Client()})
	if c != nil {
		h.t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, resp, err
}

// TestCORSOriginOpensWebSockets: a page on a CORS_ORIGINS origin (a sibling subdomain,
// whose sockets browsers mark same-site) opens proxied WebSockets like the page's own
// origin, through the whole handler; the upstream leg is what any other socket gets.
func TestCORSOriginOpensWebSockets(t *testing.T) {
	h := newHarness(t, withCORS(appOrigin))
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)

	c, resp, err := dialFrom(h, "/cartesia/tts/websocket", http.Header{
		"Origin": {appOrigin}, "Sec-Fetch-Site": {"same-site"},
		"Sec-Fetch-Mode": {"websocket"}}, sess, tts)
	if err != nil {
		code := ""
		if resp != nil {
			code = errorOf(t, resp)
		}
		t.Fatalf("WebSocket from the CORS origin: %v %s", err, code)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || len(msg) == 0 {
		t.Fatalf("no answer relayed: %q %v", msg, err)
	}
	_ = c.Close(websocket.StatusNormalClosure, "")

	dials := h.fake.RequestsTo(sectest.RouteTTSWebSocket)
	if len(dials) != 1 {
		t.Fatalf("upstream saw %d WebSocket dials, want 1", len(dials))
	}
	if o := dials[0].Header.Values("Origin"); len(o) != 0 {
		t.Errorf("the page's Origin %q reached upstream", o)
	}
}

// TestCORSOriginWebSocketLookalikesAreRefused: only the listed origin byte for byte, and
// never with cross-site Fetch Metadata, which the CSRF check lets through for CORS
// origins and the proxy refuses.
func TestCORSOriginWebSocketLookalikesAreRefused(t *testing.T) {
	h := newHarness(t, withCORS(appOrigin))
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)

	var tests []http.Header
	for _, o := range lookalikes {
		tests = append(tests, http.Header{"Origin": {o}, "Sec-Fetch-Site": {"same-site"},
			"Sec-Fetch-Mode": {"websocket"}})
	}
	tests = append(tests,
		http.Header{"Origin": {appOrigin}, "Sec-Fetch-Site": {"cross-site"},
			"Sec-Fetch-Mode": {"websocket"}},
		http.Header{"Origin": {appOrigin}, "Sec-Fetch-Site": {"same-site"},
			"Sec-Fetch-Mode": {"navigate"}},
		http.Header{"Origin": {appOrigin, appOrigin}, "Sec-Fetch-Site": {"same-site"}})
	for _, hdr := range tests {
		_, resp, err := dialFrom(h, "/cartesia/tts/websocket", hdr, sess, tts)
		if err == nil {
			t.Errorf("%v: the upgrade was accepted", hdr)
			continue
		}
		if resp == nil || resp.StatusCode != http.StatusForbidden ||
			errorOf(t, resp) != "csrf_rejected" {
			t.Errorf("%v: %v, want 403 csrf_rejected", hdr, err)
		}
	}
	if n := len(h.fake.RequestsTo(sectest.RouteTTSWebSocket)); n != 0 {
		t.Errorf("upstream saw %d WebSocket dials for refused origins", n)
	}
}

func TestNewChecksTheSpoolDir(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, dir := range []string{filepath.Join(t.TempDir(), "missing"), file} {
		c := minimalConfig(t)
		c.SpoolDir = dir
		if _, err := api.New(c); err == nil {
			t.Errorf("New accepted SpoolDir %q", dir)
		}
	}
	c := minimalConfig(t)
	c.SpoolDir, c.SpoolPerUser, c.SpoolTotal = t.TempDir(), 1<<20, 4<<20
	if _, err := api.New(c); err != nil {
		t.Errorf("New refused a spool directory: %v", err)
	}
}
