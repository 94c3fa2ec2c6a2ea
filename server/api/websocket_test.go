package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/sectest"
)

// dialWS opens a WebSocket through the whole handler as a browser would: cookies and an
// Origin header, and no X-CSRF (browsers cannot add one to an upgrade).
func (h *harness) dialWS(path, origin string, cookies ...*http.Cookie) (*websocket.Conn,
	*http.Response, error) {
	hdr := http.Header{"Sec-Fetch-Site": {"same-origin"}, "Sec-Fetch-Mode": {"websocket"}}
	if origin != "" {
		hdr.Set("Origin", origin)
	}
	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.String())
	}
	hdr.Set("Cookie", strings.Join(parts, "; "))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return websocket.Dial(ctx, "ws://"+h.host+path, &websocket.DialOptions{HTTPHeader: hdr,
		HTTPClient: h.rec.Client()})
}

func errorOf(t *testing.T, resp *http.Response) string {
	t.Helper()
	if resp == nil {
		t.Fatal("no HTTP answer")
	}
	b, _ := io.ReadAll(resp.Body)
	var body reply.Body
	_ = json.Unmarshal(b, &body)
	return body.Error.Code
}

func TestWebSocketThroughTheAPINeedsTheExactOriginNotXCSRF(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)

	c, _, err := h.dialWS("/cartesia/tts/websocket", h.origin, sess, tts)
	if err != nil {
		t.Fatalf("same-origin upgrade: %v", err)
	}
	defer c.CloseNow()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hi" {
		t.Errorf("echo %q %v", msg, err)
	}

	for _, origin := range []string{"", "https://evil.example", "null",
		strings.Replace(h.origin, "http://", "https://", 1)} {
		_, resp, err := h.dialWS("/cartesia/tts/websocket", origin, sess, tts)
		if err == nil {
			t.Fatalf("origin %q was accepted", origin)
		}
		if resp.StatusCode != http.StatusForbidden || errorOf(t, resp) != "csrf_rejected" {
			t.Errorf("origin %q: %d, want 403 csrf_rejected", origin, resp.StatusCode)
		}
	}
	if n := len(h.fake.RequestsTo(sectest.RouteTTSWebSocket)); n != 1 {
		t.Errorf("upstream saw %d WebSocket dials, want 1", n)
	}
}

func TestLogoutClosesTheSessionsWebSockets(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)
	c, _, err := h.dialWS("/cartesia/tts/websocket", h.origin, sess, tts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	// One echo first: the relay is filed under its session before it relays anything,
	// so after it the logout is sure to find the socket (the 101 alone may arrive
	// before the filing).
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}

	if r := h.do(req{path: "/api/logout", cookies: []*http.Cookie{sess}}); r.status != 204 {
		t.Fatalf("logout %d", r.status)
	}

	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusPolicyViolation ||
		ce.Reason != "session ended" {
		t.Errorf("socket ended with %v, want 1008 session ended", err)
	}
	if ev := h.logs.Events(t, "logout"); len(ev) != 1 || ev[0]["websockets_closed"] != 1.0 {
		t.Errorf("logout events %v", ev)
	}
}

func TestSigningInAgainClosesTheOldSessionsWebSockets(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)
	c, _, err := h.dialWS("/cartesia/tts/websocket", h.origin, sess, tts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	h.login("alice", "alice-pw", sess)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _, err = c.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusPolicyViolation {
		t.Errorf("socket of the replaced session ended with %v, want 1008", err)
	}
}

func TestMultipartOnlyOnTheUploadRoutes(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	_, stt := h.mint(sess, `{"grant":"stt"}`)
	_, tts := h.mint(sess, `{"grant":"tts"}`)
	form := map[string]string{"Content-Type": "multipart/form-data; boundary=b"}
	body := "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nink-whisper\r\n" +
		"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n" +
		"Content-Type: audio/wav\r\n\r\nRIFF\r\n--b--\r\n"

	for _, path := range []string{"/cartesia/stt", "/cartesia/audio/transcriptions"} {
		r := h.do(req{path: path, body: body, header: form,
			cookies: []*http.Cookie{sess, stt}})
		if r.code() == "unsupported_media_type" || len(h.fake.RequestsTo("POST "+
			strings.TrimPrefix(path, "/cartesia"))) != 1 {
			t.Errorf("%s: %d %s; the upload did not reach upstream", path, r.status, r.body)
		}
	}

	for _, path := range []string{"/cartesia/tts/bytes", "/cartesia/tts/sse", "/api/token",
		"/api/login"} {
		r := h.do(req{path: path, body: body, header: form,
			cookies: []*http.Cookie{sess, tts}})
		if r.status != http.StatusUnsupportedMediaType || r.code() != "unsupported_media_type" {
			t.Errorf("%s accepted multipart: %d %s", path, r.status, r.body)
		}
	}

	// The upload routes still need X-CSRF: a cross-site form can post multipart.
	r := h.do(req{path: "/cartesia/stt", body: body,
		header:  map[string]string{"Content-Type": form["Content-Type"], "X-CSRF": ""},
		cookies: []*http.Cookie{sess, stt}})
	if r.status != http.StatusForbidden || r.code() != "csrf_rejected" {
		t.Errorf("upload without X-CSRF: %d %s, want 403 csrf_rejected", r.status, r.body)
	}
}
