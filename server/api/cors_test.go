package api_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/sectest"
)

// appOrigin is the one CORS origin the CORS tests configure: a sibling subdomain.
const appOrigin = "https://app.example.com"

// lookalikes are origins that must never count as appOrigin.
var lookalikes = []string{
	"https://app.example.com.evil.com",
	"https://app.example.evil.com",
	"https://evil-app.example.com",
	"http://app.example.com",
	"https://app.example.com:8443",
	"https://app.example.com:443",
	"https://app.example.com/",
	"HTTPS://APP.EXAMPLE.COM",
	"https://example.com",
	"null",
	"*",
}

func withCORS(origins ...string) harnessOption {
	return func(c *api.Config) { c.CORSOrigins = origins }
}

// corsHeaders returns every Access-Control-* header of a response.
func corsHeaders(r resp) http.Header {
	out := http.Header{}
	for k, v := range r.header {
		if strings.HasPrefix(k, "Access-Control-") {
			out[k] = v
		}
	}
	return out
}

// preflight sends what a browser sends before a credentialed cross-origin POST.
func preflight(h *harness, path, origin string) resp {
	return h.do(req{method: http.MethodOptions, path: path, header: map[string]string{
		"Origin": origin, "Sec-Fetch-Site": "same-site", "Sec-Fetch-Mode": "cors",
		"Access-Control-Request-Method":  "POST",
		"Access-Control-Request-Headers": "content-type,x-csrf",
		"X-CSRF":                         "",
	}})
}

// fromOrigin is the header set of a credentialed fetch from origin's page.
func fromOrigin(origin string) map[string]string {
	return map[string]string{"Origin": origin, "Sec-Fetch-Site": "same-site",
		"Sec-Fetch-Mode": "cors"}
}

func TestCORSIsClosedByDefault(t *testing.T) {
	h := newHarness(t)
	// Upstream answering CORS headers of its own changes nothing.
	h.fake.Handle(sectest.RouteTTSBytes, http.HandlerFunc(func(w http.ResponseWriter,
		_ *http.Request) {
		w.Header().Set("Access-Control-Allow-Origin", "*")
		w.Header().Set("Access-Control-Allow-Credentials", "true")
		w.Header().Set("Access-Control-Expose-Headers", "*")
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = io.WriteString(w, "RIFF")
	}))

	for _, path := range []string{"/api/token", "/api/login", "/cartesia/tts/bytes"} {
		r := preflight(h, path, appOrigin)
		if len(corsHeaders(r)) != 0 || r.status == http.StatusNoContent {
			t.Errorf("preflight %s: %d %v, want a refusal without CORS headers", path,
				r.status, corsHeaders(r))
		}
	}

	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)
	r := h.do(req{path: "/cartesia/tts/bytes", body: `{"transcript":"hi"}`,
		cookies: []*http.Cookie{sess, tts}, header: map[string]string{"Origin": h.origin}})
	if r.status != 200 || len(corsHeaders(r)) != 0 {
		t.Errorf("proxied answer: %d with CORS headers %v", r.status, corsHeaders(r))
	}
	r = h.do(req{path: "/api/login", body: `{"username":"bob","password":"bob-pw"}`,
		header: fromOrigin(appOrigin)})
	if r.status != 403 || len(corsHeaders(r)) != 0 {
		t.Errorf("sign-in from another origin: %d %v", r.status, corsHeaders(r))
	}
}

func TestCORSPreflightForAConfiguredOrigin(t *testing.T) {
	h := newHarness(t, withCORS("https://other.example.com", appOrigin))
	for _, path := range []string{"/api/token", "/api/login", "/api/info", "/api/token/direct",
		"/cartesia/tts/bytes", "/cartesia/stt"} {
		r := preflight(h, path, appOrigin)
		want := map[string]string{
			"Access-Control-Allow-Origin":      appOrigin,
			"Access-Control-Allow-Credentials": "true",
			"Access-Control-Allow-Methods":     "GET, POST",
			"Access-Control-Allow-Headers":     "content-type, x-csrf",
			"Access-Control-Max-Age":           "600",
		}
		if r.status != http.StatusNoContent || r.body != "" {
			t.Errorf("preflight %s: %d %q, want 204 and no body", path, r.status, r.body)
		}
		for k, v := range want {
			if got := r.header.Values(k); len(got) != 1 || got[0] != v {
				t.Errorf("preflight %s: %s = %q, want %q", path, k, got, v)
			}
		}
		if !slices.Contains(r.header.Values("Vary"), "Origin") {
			t.Errorf("preflight %s: Vary %q lacks Origin", path, r.header.Values("Vary"))
		}
	}

	for _, origin := range lookalikes {
		r := preflight(h, "/api/token", origin)
		if r.status == http.StatusNoContent || len(corsHeaders(r)) != 0 {
			t.Errorf("preflight from %q: %d %v, want a refusal without CORS headers", origin,
				r.status, corsHeaders(r))
		}
	}

	// Pages, scripts and the wasm bundle are not CORS resources.
	r := preflight(h, "/voxgate.js", appOrigin)
	if r.status == http.StatusNoContent || len(corsHeaders(r)) != 0 {
		t.Errorf("preflight for a static file: %d %v", r.status, corsHeaders(r))
	}
	if n := len(h.fake.Requests()); n != 0 {
		t.Errorf("preflights reached upstream %d times", n)
	}
}

func TestCORSOriginMakesCredentialedCalls(t *testing.T) {
	h := newHarness(t, withCORS(appOrigin))
	checkCORS := func(what string, r resp) {
		t.Helper()
		if r.header.Get("Access-Control-Allow-Origin") != appOrigin ||
			r.header.Get("Access-Control-Allow-Credentials") != "true" ||
			!slices.Contains(r.header.Values("Vary"), "Origin") {
			t.Errorf("%s: CORS headers %v, Vary %q", what, corsHeaders(r), r.header.Values("Vary"))
		}
	}

	r := h.do(req{path: "/api/login", body: `{"username":"alice","password":"alice-pw"}`,
		header: fromOrigin(appOrigin)})
	if r.status != 200 {
		t.Fatalf("sign-in from the CORS origin: %d %s", r.status, r.body)
	}
	checkCORS("sign-in", r)
	sc := r.cookie(t, "__Host-Http-vg_session")
	if sc == nil || sc.SameSite != http.SameSiteStrictMode {
		t.Fatalf("session cookie %v, want SameSite=Strict", sc)
	}
	sess := &http.Cookie{Name: sc.Name, Value: sc.Value}

	r = h.do(req{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{sess},
		header: fromOrigin(appOrigin)})
	if r.status != 200 {
		t.Errorf("mint from the CORS origin: %d %s", r.status, r.body)
	}
	checkCORS("mint", r)
	r = h.do(req{method: "GET", path: "/api/session", cookies: []*http.Cookie{sess},
		header: map[string]string{"Origin": appOrigin, "Sec-Fetch-Site": ""}})
	if r.status != 200 {
		t.Errorf("session from the CORS origin without fetch metadata: %d %s", r.status, r.body)
	}
	checkCORS("session", r)

	// Errors are readable by the page too, and X-CSRF is still required.
	noCSRF := fromOrigin(appOrigin)
	noCSRF["X-CSRF"] = ""
	r = h.do(req{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{sess},
		header: noCSRF})
	if r.status != 403 || r.code() != "csrf_rejected" {
		t.Errorf("no X-CSRF from the CORS origin: %d %s", r.status, r.body)
	}
	checkCORS("refusal", r)

	// A user-initiated request (Sec-Fetch-Site: none) never carries a page's Origin.
	r = h.do(req{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{sess},
		header: map[string]string{"Origin": appOrigin, "Sec-Fetch-Site": "none"}})
	if r.status != 403 || r.code() != "csrf_rejected" {
		t.Errorf("Sec-Fetch-Site none: %d %s", r.status, r.body)
	}

	for _, origin := range lookalikes {
		for _, site := range []string{"same-site", "cross-site", ""} {
			hdr := map[string]string{"Origin": origin, "Sec-Fetch-Site": site}
			r := h.do(req{path: "/api/token", body: `{"grant":"tts"}`,
				cookies: []*http.Cookie{sess}, header: hdr})
			if r.status != 403 || r.code() != "csrf_rejected" || len(corsHeaders(r)) != 0 {
				t.Errorf("origin %q, Sec-Fetch-Site %q: %d %v %s", origin, site, r.status,
					corsHeaders(r), r.body)
			}
		}
	}

	// Two Origin headers are never matched, even when one of them is the CORS origin.
	r = h.do(req{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{sess},
		header: map[string]string{"Sec-Fetch-Site": "same-site"},
		extra:  http.Header{"Origin": {appOrigin, appOrigin}}})
	if r.status != 403 || len(corsHeaders(r)) != 0 {
		t.Errorf("repeated Origin: %d %v", r.status, corsHeaders(r))
	}

	// The page's own origin works as before, with no CORS headers.
	r = h.do(req{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{sess},
		header: map[string]string{"Origin": h.origin}})
	if r.status != 200 || len(corsHeaders(r)) != 0 {
		t.Errorf("same-origin mint: %d %v", r.status, corsHeaders(r))
	}

	// Static files never answer CORS.
	r = h.do(req{method: "GET", path: "/voxgate.js", header: fromOrigin(appOrigin)})
	if len(corsHeaders(r)) != 0 {
		t.Errorf("static file answered CORS: %v", corsHeaders(r))
	}
}

func TestCheckCORSOrigin(t *testing.T) {
	for _, ok := range []string{"https://app.example.com", "http://localhost:3000",
		"https://app.example.com:8443", "http://[::1]:8080"} {
		if err := api.CheckCORSOrigin(ok); err != nil {
			t.Errorf("CheckCORSOrigin(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"*", "null", "", "app.example.com", "https://app.example.com/",
		"https://app.example.com/app", "https://App.example.com", "https://app.example.com:443",
		"http://app.example.com:80", "ftp://app.example.com", "https://u@app.example.com",
		"https://app.example.com?x", "https://*.example.com"} {
		if err := api.CheckCORSOrigin(bad); err == nil {
			t.Errorf("CheckCORSOrigin(%q) accepted", bad)
		}
	}

	for _, origins := range [][]string{{"*"}, {appOrigin, "null"}, {appOrigin + "/"}} {
		c := minimalConfig(t)
		c.CORSOrigins = origins
		if _, err := api.New(c); err == nil {
			t.Errorf("New accepted CORS origins %q", origins)
		}
	}
	c := minimalConfig(t)
	c.CORSOrigins = []string{appOrigin, "http://localhost:3000"}
	if _, err := api.New(c); err != nil {
		t.Errorf("New refused valid CORS origins: %v", err)
	}
}
