package emulator

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// pageOrigin is a browser page calling the emulator directly, as in direct mode.
const pageOrigin = "http://127.0.0.1:8080"

// corsPreflight sends what a browser sends before a cross-origin call: Origin and the
// Access-Control-Request-* headers, never credentials or a Cartesia-Version.
func corsPreflight(h *harness, path, requestHeaders string) response {
	hdr := map[string]string{"Origin": pageOrigin, "Access-Control-Request-Method": "POST"}
	if requestHeaders != "" {
		hdr["Access-Control-Request-Headers"] = requestHeaders
	}
	return h.do(request{method: http.MethodOptions, path: path, headers: hdr})
}

func TestPreflightsAreAnsweredWithoutCredentials(t *testing.T) {
	h := newHarness(t, 0)
	asked := "authorization,cartesia-version,Content-Type, x-stainless-os"
	for _, path := range []string{"/tts/bytes", "/tts/sse", "/stt", "/audio/transcriptions",
		"/access-token", "/tts/websocket", "/agents/stream/a1", "/", "/no-such-route"} {
		r := corsPreflight(h, path, asked)
		want := map[string]string{
			"Access-Control-Allow-Origin":  "*",
			"Access-Control-Allow-Methods": "GET, POST",
			"Access-Control-Allow-Headers": "authorization, cartesia-version, content-type, " +
				"x-stainless-os",
			"Access-Control-Max-Age": "600",
		}
		if r.status != http.StatusNoContent || len(r.body) != 0 {
			t.Errorf("preflight %s: %d %s, want 204 with no body", path, r.status, r.body)
		}
		for k, v := range want {
			if got := r.header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("preflight %s: %s = %q, want %q", path, k, got, v)
			}
		}
		if _, ok := r.header["Access-Control-Allow-Credentials"]; ok {
			t.Errorf("preflight %s allows credentials", path)
		}
		if !uuidV4.MatchString(r.header.Get("Cartesia-Request-Id")) {
			t.Errorf("preflight %s has no request id", path)
		}
	}
}

func TestPreflightHeaderListFallsBackToTheKnownHeaders(t *testing.T) {
	h := newHarness(t, 0)
	many := strings.Repeat("x-a,", 40) + "x-b"
	for _, asked := range []string{"", "authorization, bad header", "x(y)", "a,,b",
		"authorization;x", many, strings.Repeat("a", 65)} {
		got := corsPreflight(h, "/tts/bytes", asked).header.Get("Access-Control-Allow-Headers")
		for _, name := range []string{"authorization", "content-type", "cartesia-version",
			"x-cartesia-client", "x-stainless-os", "x-stainless-package-version"} {
			if !strings.Contains(got, name) {
				t.Errorf("asked %q: Allow-Headers %q lacks %s", asked, got, name)
			}
		}
		if strings.ContainsAny(got, "()\";") || strings.Contains(got, "bad header") {
			t.Errorf("asked %q: Allow-Headers %q echoes a malformed name", asked, got)
		}
	}
}

func TestCrossOriginCallsCarryAllowOriginStar(t *testing.T) {
	h := newHarness(t, 0)
	tok := h.mint(`{"tts":true}`, 60)
	withOrigin := func(hdr map[string]string) map[string]string {
		hdr["Origin"] = pageOrigin
		return hdr
	}

	tests := []struct {
		name   string
		method string
		path   string
		header map[string]string
		status int
	}{
		{"token call", "POST", "/tts/bytes", withOrigin(bearer(tok)), 200},
		{"no credentials", "POST", "/tts/bytes",
			withOrigin(map[string]string{"Cartesia-Version": testVersion}), 401},
		{"no version", "POST", "/tts/bytes",
			withOrigin(map[string]string{"Authorization": "Bearer " + tok}), 400},
		{"unknown route", "GET", "/voices", withOrigin(bearer(tok)), 404},
		{"OPTIONS that is not a preflight", "OPTIONS", "/tts/bytes", withOrigin(bearer(tok)), 405},
		{"info", "GET", "/", withOrigin(map[string]string{}), 200},
	}
	for _, tt := range tests {
		r := h.do(request{method: tt.method, path: tt.path, headers: tt.header, body: smallTTS})
		if r.status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, r.status, r.body, tt.status)
		}
		if got := r.header.Values("Access-Control-Allow-Origin"); len(got) != 1 || got[0] != "*" {
			t.Errorf("%s: Access-Control-Allow-Origin %q, want *", tt.name, got)
		}
		if !strings.Contains(r.header.Get("Access-Control-Expose-Headers"), "Cartesia-Request-Id") {
			t.Errorf("%s: the request id is not exposed", tt.name)
		}
		if _, ok := r.header["Access-Control-Allow-Credentials"]; ok {
			t.Errorf("%s: credentials allowed", tt.name)
		}
	}

	// Without an Origin (a server, not a page) nothing changes.
	r := h.do(request{path: "/tts/bytes", headers: bearer(tok), body: smallTTS})
	if r.status != 200 || r.header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("no Origin: %d with Allow-Origin %q", r.status,
			r.header.Get("Access-Control-Allow-Origin"))
	}
	// A preflight is no way around authentication: the call after it still needs one.
	r = h.do(request{method: "POST", path: "/tts/bytes", body: smallTTS,
		headers: map[string]string{"Origin": pageOrigin, "Cartesia-Version": testVersion,
			"Access-Control-Request-Method": "POST"}})
	if r.status != 401 {
		t.Errorf("POST with preflight headers and no credentials: %d", r.status)
	}
}

func TestWebSocketsAcceptAnyOrigin(t *testing.T) {
	h := newHarness(t, 0)
	for _, origin := range []string{pageOrigin, "https://some-app.example", "null"} {
		tok := h.mint(`{"tts":true}`, 60)
		q := "?" + url.Values{"access_token": {tok}, "cartesia_version": {testVersion}}.Encode()
		conn, _, err := h.openSocket("/tts/websocket"+q, http.Header{"Origin": {origin}})
		if err != nil {
			t.Fatalf("Origin %q: %v", origin, err)
		}
		sendJSON(t, conn, wsInput("cors", "Ok.", nil))
		logs, _ := collectContexts(t, conn, "cors")
		if got := logs["cors"].text(t, 16000); got != "Ok." {
			t.Errorf("Origin %q: the socket spoke %q, want Ok.", origin, got)
		}
	}

	// Any Origin, but still the token's grant.
	stt := h.mint(`{"stt":true}`, 60)
	q := "?" + url.Values{"access_token": {stt}, "cartesia_version": {testVersion}}.Encode()
	_, resp, err := h.openSocket("/tts/websocket"+q, http.Header{"Origin": {pageOrigin}})
	wantRefused(t, resp, err, 403, codeInsufficientGrant)
}
