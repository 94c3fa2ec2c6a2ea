package security_test

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/sectest"
)

// Items 1-8: cross-site requests, CORS and the Host allowlist, over every route that a
// cookie makes powerful.

// cookieRoutes are the calls a cookie makes powerful, other than WebSocket upgrades:
// sign-in, sign-out and minting (listed by hand: package api exports no route table)
// and every HTTP route of the proxy (from proxy.Routes, so a new one is covered at once).
func cookieRoutes(cookies []*http.Cookie) []call {
	out := []call{
		{path: "/api/login", body: `{"username":"alice","password":"` + alicePassword + `"}`},
		{path: "/api/logout", cookies: cookies},
		{path: "/api/token", body: `{"grant":"tts"}`, cookies: cookies},
		{method: http.MethodGet, path: "/api/session", cookies: cookies},
	}
	for _, rt := range routesOf(httpKinds...) {
		out = append(out, proxyCall(rt, cookies))
	}
	return out
}

// with returns c with header values added on top of its own.
func with(c call, header map[string]string) call {
	h := map[string]string{}
	for k, v := range c.header {
		h[k] = v
	}
	for k, v := range header {
		h[k] = v
	}
	c.header = h
	return c
}

// refuseAll sends every call with header on top and expects 403 csrf_rejected, no
// cookie set, nothing upstream, and one security_rejected event per call naming check.
func refuseAll(t *testing.T, e *env, header map[string]string, check string) {
	t.Helper()
	cookies := e.signedIn()
	upstream := len(e.fake.Requests())
	calls := cookieRoutes(cookies)

	for _, c := range calls {
		a := e.do(with(c, header))
		if a.status != http.StatusForbidden || a.code() != "csrf_rejected" {
			t.Errorf("%s %s: %d %s, want 403 csrf_rejected", c.method, c.path, a.status, a.body)
		}
		if n := len(a.header.Values("Set-Cookie")); n != 0 {
			t.Errorf("%s: a refused request set %d cookies", c.path, n)
		}
		ev := e.logs.Matching(t, "security_rejected",
			map[string]string{"reason": "csrf_rejected", "route": c.path, "check": check})
		if len(ev) != 1 {
			t.Errorf("%s: %d security_rejected events with check %s, want 1", c.path, len(ev),
				check)
		}
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream saw %d requests from refused calls", n)
	}
	// The session survived: a refused sign-out signed nobody out.
	if a := e.do(call{method: http.MethodGet, path: "/api/session",
		cookies: cookies[:1]}); a.status != http.StatusOK {
		t.Errorf("session after the refusals: %d %s", a.status, a.body)
	}
}

func TestItem01_CrossSitePostsAreRefusedAndLogged(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	refuseAll(t, e, map[string]string{"Sec-Fetch-Site": "cross-site",
		"Origin": "https://evil.example"}, "sec_fetch_site")
}

func TestItem02_SameSiteSiblingsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	refuseAll(t, e, map[string]string{"Sec-Fetch-Site": "same-site",
		"Origin": "http://other.localhost:" + port(e.host)}, "sec_fetch_site")
}

func TestItem03_EveryCookieRouteNeedsXCSRF(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	refuseAll(t, e, map[string]string{"X-CSRF": ""}, "missing_x_csrf")
}

func TestItem04_LookalikeOriginsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	upstream := len(e.fake.Requests())
	other := "1"
	if port(e.host) == "1" {
		other = "2"
	}

	origins := []string{
		"null",
		e.origin + ".evil.example",
		"https://evil.example#" + e.host,
		"https://" + e.host,                         // scheme
		"http://127.0.0.1:" + other,                 // port
		"http://evil@" + e.host,                     // userinfo (golang/go#78563)
		e.origin + "/",                              // not an origin
		"http://localhost:" + port(e.host),          // an allowed Host, not the origin
		strings.ToUpper(e.origin),                   // byte-for-byte, not case-folded
		"http://127.0.0.1:" + port(e.host) + ".",    // trailing junk
		e.origin + ", https://evil.example",         // a list
		"http://[::ffff:127.0.0.1]:" + port(e.host), // another spelling of the host
	}
	for _, origin := range origins {
		for _, c := range cookieRoutes(cookies) {
			a := e.do(with(c, map[string]string{"Sec-Fetch-Site": "", "Origin": origin}))
			if a.status != http.StatusForbidden || a.code() != "csrf_rejected" {
				t.Errorf("Origin %q on %s: %d %s, want 403", origin, c.path, a.status, a.body)
			}
		}
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}

	// The control: the exact origin without Fetch Metadata is an old browser, let in.
	a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`, cookies: cookies[:1],
		header: map[string]string{"Sec-Fetch-Site": "", "Origin": e.origin}})
	if a.status != http.StatusOK {
		t.Errorf("exact origin: %d %s, want 200", a.status, a.body)
	}
}

func TestItem05_SimpleContentTypesAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	upstream := len(e.fake.Requests())

	simple := []string{"text/plain", "text/plain; charset=utf-8",
		"application/x-www-form-urlencoded", "multipart/form-data; boundary=b",
		"application/json; charset=utf-7", "application/jsonp", "application/json-patch+json"}
	for _, c := range cookieRoutes(cookies) {
		if c.method == http.MethodGet {
			continue
		}
		upload := strings.HasPrefix(c.header["Content-Type"], "multipart/")
		for _, ct := range simple {
			if upload && strings.HasPrefix(ct, "multipart/") {
				continue // the one place a form is the expected body
			}
			body := c.body
			if body == "" {
				body = "x=1"
			}
			a := e.do(call{path: c.path, body: body, cookies: c.cookies,
				header: map[string]string{"Content-Type": ct}})
			if a.status != http.StatusUnsupportedMediaType ||
				a.code() != "unsupported_media_type" {
				t.Errorf("%s as %s: %d %s, want 415", c.path, ct, a.status, a.body)
			}
		}
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}

func TestItem06_OtherMethodsAreRefusedAndGETIsHarmless(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	upstream := len(e.fake.Requests())

	routes := map[string]string{"/api/login": "POST", "/api/logout": "POST",
		"/api/token": "POST", "/api/session": "GET", "/": "GET", "/healthz": "GET"}
	for _, rt := range proxy.Routes() {
		routes[browserPath(rt)] = rt.Method
	}
	for path, allowed := range routes {
		for _, m := range []string{"GET", "POST", "PUT", "DELETE", "PATCH", "TRACE", "CONNECT"} {
			if m == allowed {
				continue
			}
			a := e.do(call{method: m, path: path, cookies: cookies})
			if a.status != http.StatusMethodNotAllowed || a.code() != "method_not_allowed" ||
				!strings.Contains(a.header.Get("Allow"), allowed) {
				t.Errorf("%s %s: %d Allow %q %s, want 405 allowing %s", m, path, a.status,
					a.header.Get("Allow"), a.body, allowed)
			}
			if len(a.header.Values("Set-Cookie")) != 0 {
				t.Errorf("%s %s set a cookie", m, path)
			}
		}
	}

	// Method overrides are not a thing here.
	for _, c := range []call{
		{method: "GET", path: "/api/token", cookies: cookies,
			header: map[string]string{"X-HTTP-Method-Override": "POST"}},
		{method: "GET", path: "/cartesia/tts/bytes", cookies: cookies,
			header: map[string]string{"X-HTTP-Method-Override": "POST", "X-Method-Override": "POST"}},
		{method: "GET", path: "/api/token?_method=POST&grant=tts", cookies: cookies},
	} {
		if a := e.do(c); a.status != http.StatusMethodNotAllowed {
			t.Errorf("%s %s with an override: %d, want 405", c.method, c.path, a.status)
		}
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}

func TestItem07_CORSStaysClosed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()

	for _, c := range cookieRoutes(cookies) {
		for _, site := range []string{"cross-site", ""} {
			a := e.do(call{method: http.MethodOptions, path: c.path, header: map[string]string{
				"Origin": "https://evil.example", "Sec-Fetch-Site": site,
				"Access-Control-Request-Method": "POST", "X-CSRF": "",
				"Access-Control-Request-Headers": "x-csrf, content-type"}})
			if a.status < 400 {
				t.Errorf("preflight of %s: %d, want a refusal", c.path, a.status)
			}
		}
	}

	// An upstream that grants CORS does not grant it for us.
	e.fake.Handle(sectest.RouteTTSBytes, sectest.Hostile(e.fake.Default(sectest.RouteTTSBytes)))
	if a := e.do(proxyCall(routesOf(proxy.Stream)[0], cookies)); a.status != http.StatusOK {
		t.Errorf("proxied call: %d %s", a.status, a.body)
	}

	for _, r := range e.rec.Responses() {
		for name := range r.Header {
			if strings.HasPrefix(strings.ToLower(name), "access-control-") {
				t.Errorf("%s %s answered %s: %v", r.Method, r.Path, name, r.Header[name])
			}
		}
	}
}

func TestItem08_ForeignHostsAndAbsoluteFormsAreRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	upstream := len(e.fake.Requests())
	cookieLine := fmt.Sprintf("Cookie: %s=%s; %s=%s\r\n", cookies[0].Name, cookies[0].Value,
		cookies[1].Name, cookies[1].Value)
	mint := "Content-Type: application/json\r\nX-CSRF: 1\r\nContent-Length: 15\r\n" +
		cookieLine + "\r\n{\"grant\":\"tts\"}"
	evil := "attacker.test:" + port(e.host)

	tests := []struct {
		name, text string
		status     int
	}{
		{"foreign Host", "GET /healthz HTTP/1.1\r\nHost: " + evil + "\r\n\r\n", 421},
		{"rebinding mint", "POST /api/token HTTP/1.1\r\nHost: " + evil + "\r\nOrigin: http://" +
			evil + "\r\n" + mint, 421},
		{"absolute form naming another host", "POST http://" + evil + "/api/token HTTP/1.1\r\n" +
			"Host: " + e.host + "\r\nSec-Fetch-Site: same-origin\r\n" + mint, 421},
		{"absolute form to the page", "GET http://" + evil + "/ HTTP/1.1\r\nHost: " + e.host +
			"\r\n\r\n", 421},
		{"two Host headers", "GET /healthz HTTP/1.1\r\nHost: " + e.host + "\r\nHost: " + evil +
			"\r\n\r\n", 400},
		{"Host with a trailing dot", "GET /healthz HTTP/1.1\r\nHost: localhost.:" +
			port(e.host) + "\r\n\r\n", 421},
		{"Host with userinfo", "GET /healthz HTTP/1.1\r\nHost: evil@" + e.host + "\r\n\r\n", 400},
		{"no Host", "GET /healthz HTTP/1.1\r\n\r\n", 400},
		{"an allowed alias is served", "GET /healthz HTTP/1.1\r\nHost: localhost:" +
			port(e.host) + "\r\n\r\n", 200},
	}
	rejected := 0
	for _, tt := range tests {
		a := e.raw(tt.text, 5*time.Second)
		if a.status != tt.status {
			t.Errorf("%s: %d %s, want %d", tt.name, a.status, a.body, tt.status)
		}
		if tt.status == http.StatusMisdirectedRequest {
			rejected++
			if a.code() != "host_rejected" {
				t.Errorf("%s: code %q", tt.name, a.code())
			}
		}
	}
	if n := len(e.logs.Matching(t, "security_rejected",
		map[string]string{"reason": "host_rejected"})); n != rejected {
		t.Errorf("%d host_rejected events, want one per rejection (%d)", n, rejected)
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}
