package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// checkPrefixCookie asserts the __Host-Http- rules on a parsed Set-Cookie.
func checkPrefixCookie(t *testing.T, c *http.Cookie) {
	t.Helper()
	if !strings.HasPrefix(c.Name, "__Host-Http-") {
		t.Errorf("%s: name lacks the __Host-Http- prefix", c.Name)
	}
	if !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode || c.Path != "/" ||
		c.Domain != "" {
		t.Errorf("%s: Secure=%v HttpOnly=%v SameSite=%v Path=%q Domain=%q", c.Name, c.Secure,
			c.HttpOnly, c.SameSite, c.Path, c.Domain)
	}
}

func TestTokenCookieAttributes(t *testing.T) {
	h := newHarness(t)
	login := h.do(req{path: "/api/login", body: `{"username":"alice","password":"alice-pw"}`})
	sc := login.cookie(t, session.CookieName)
	if sc == nil {
		t.Fatal("no session cookie")
	}
	checkPrefixCookie(t, sc)
	if sc.MaxAge != int((12 * time.Hour).Seconds()) {
		t.Errorf("session Max-Age %d, want the 12 h absolute timeout", sc.MaxAge)
	}
	var info struct {
		User             string
		Grants           []string
		SessionExpiresAt int64 `json:"session_expires_at"`
	}
	_ = json.Unmarshal([]byte(login.body), &info)
	if info.User != "alice" || len(info.Grants) != 3 ||
		info.SessionExpiresAt != h.clk.Now().Add(time.Hour).UnixMilli() {
		t.Errorf("login answered %s", login.body)
	}

	sess := &http.Cookie{Name: sc.Name, Value: sc.Value}
	for _, tc := range []struct {
		body string
		ttl  int
	}{
		{`{"grant":"tts","expires_in":120}`, 120},
		{`{"grant":"stt"}`, 300},
		{`{"grant":"agent","expires_in":3600}`, 3600},
	} {
		r, _ := h.mint(sess, tc.body)
		if r.status != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.body, r.status, r.body)
		}
		var got struct {
			Grant      string `json:"grant"`
			ExpiresIn  int    `json:"expires_in"`
			ExpiresAt  int64  `json:"expires_at"`
			ServerTime int64  `json:"server_time"`
		}
		if err := json.Unmarshal([]byte(r.body), &got); err != nil {
			t.Fatal(err)
		}
		// The answer gives one second less than asked: Cartesia's whole-second expiry may
		// cost that much (token.ExpiryResolution).
		now := h.clk.Now()
		left := tc.ttl - 1
		if got.ExpiresIn != left || got.ServerTime != now.UnixMilli() ||
			got.ExpiresAt != now.Add(time.Duration(left)*time.Second).UnixMilli() {
			t.Errorf("%s answered %s", tc.body, r.body)
		}
		if strings.Contains(r.body, "token\"") || r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("token answer leaks or is cacheable: %s %v", r.body, r.header)
		}

		c := r.cookie(t, seal.CookieName(token.Grant(got.Grant)))
		if c == nil {
			t.Fatalf("%s set no token cookie", tc.body)
		}
		checkPrefixCookie(t, c)
		if c.MaxAge != left {
			t.Errorf("%s: Max-Age %d, want the token's usable life %d", c.Name, c.MaxAge, left)
		}
		if len(c.Name)+len(c.Value) > 4096 {
			t.Errorf("%s: name+value %d bytes", c.Name, len(c.Name)+len(c.Value))
		}
	}
}

func TestMintAsksUpstreamForExactlyOneGrant(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	for _, g := range token.Grants() {
		h.mint(sess, fmt.Sprintf(`{"grant":%q,"expires_in":60}`, g))
	}

	calls := h.fake.RequestsTo(sectest.RouteMint)
	if len(calls) != 3 {
		t.Fatalf("%d mints upstream, want 3", len(calls))
	}
	for i, c := range calls {
		var body struct {
			Grants    map[string]bool `json:"grants"`
			ExpiresIn int             `json:"expires_in"`
		}
		if err := json.Unmarshal(c.Body, &body); err != nil {
			t.Fatal(err)
		}
		g := string(token.Grants()[i])
		if len(body.Grants) != 1 || !body.Grants[g] || body.ExpiresIn != 60 {
			t.Errorf("mint %d body %s, want exactly {%q: true} for 60 s", i, c.Body, g)
		}
	}
	if n := len(h.logs.Events(t, "token_minted")); n != 3 {
		t.Errorf("%d token_minted events, want one per upstream mint (3)", n)
	}
}

func TestTokenEndpointValidation(t *testing.T) {
	h := newHarness(t)
	alice := h.login("alice", "alice-pw")
	bob := h.login("bob", "bob-pw")
	port := h.host[strings.LastIndex(h.host, ":")+1:]
	noFetchMeta := map[string]string{"Sec-Fetch-Site": ""}
	withOrigin := func(o string) map[string]string {
		return map[string]string{"Sec-Fetch-Site": "", "Origin": o}
	}

	tests := []struct {
		name   string
		sess   *http.Cookie
		body   string
		header map[string]string
		status int
		code   string
	}{
		{"unknown grant", alice, `{"grant":"admin"}`, nil, 400, "bad_request"},
		{"grant list", alice, `{"grant":["tts"]}`, nil, 400, "bad_request"},
		{"grants object", alice, `{"grants":{"tts":true}}`, nil, 400, "bad_request"},
		{"no grant", alice, `{}`, nil, 400, "bad_request"},
		{"grant number", alice, `{"grant":5}`, nil, 400, "bad_request"},
		{"upper-case grant", alice, `{"grant":"TTS"}`, nil, 400, "bad_request"},
		{"expires_in 0", alice, `{"grant":"tts","expires_in":0}`, nil, 400, "bad_request"},
		{"expires_in -1", alice, `{"grant":"tts","expires_in":-1}`, nil, 400, "bad_request"},
		{"expires_in 1", alice, `{"grant":"tts","expires_in":1}`, nil, 400, "bad_request"},
		{"expires_in 3601", alice, `{"grant":"tts","expires_in":3601}`, nil, 400, "bad_request"},
		{"expires_in string", alice, `{"grant":"tts","expires_in":"60"}`, nil, 400, "bad_request"},
		{"expires_in fraction", alice, `{"grant":"tts","expires_in":60.5}`, nil, 400, "bad_request"},
		{"expires_in exponent", alice, `{"grant":"tts","expires_in":6e1}`, nil, 400, "bad_request"},
		{"expires_in huge", alice, `{"grant":"tts","expires_in":1000000000000}`, nil, 400,
			"bad_request"},
		{"expires_in over user max", bob, `{"grant":"tts","expires_in":601}`, nil, 400,
			"bad_request"},
		{"unknown field", alice, `{"grant":"tts","scope":"all"}`, nil, 400, "bad_request"},
		{"repeated key", alice, `{"grant":"stt","grant":"tts"}`, nil, 400, "bad_request"},
		{"trailing data", alice, `{"grant":"tts"} {"grant":"stt"}`, nil, 400, "bad_request"},
		{"array body", alice, `[{"grant":"tts"}]`, nil, 400, "bad_request"},
		{"not JSON", alice, `grant=tts`, nil, 400, "bad_request"},
		{"5 KiB body", alice, `{"grant":"tts","x":"` + strings.Repeat("a", 5<<10) + `"}`, nil,
			413, "body_too_large"},
		{"grant not in policy", bob, `{"grant":"stt"}`, nil, 403, "grant_forbidden"},
		{"no session", nil, `{"grant":"tts"}`, nil, 401, "no_session"},
		{"text/plain", alice, `{"grant":"tts"}`, map[string]string{"Content-Type": "text/plain"},
			415, "unsupported_media_type"},
		{"form", alice, `{"grant":"tts"}`,
			map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, 415,
			"unsupported_media_type"},
		{"json with odd charset", alice, `{"grant":"tts"}`,
			map[string]string{"Content-Type": "application/json; charset=utf-7"}, 415,
			"unsupported_media_type"},
		{"missing X-CSRF", alice, `{"grant":"tts"}`, map[string]string{"X-CSRF": ""}, 403,
			"csrf_rejected"},
		{"X-CSRF not 1", alice, `{"grant":"tts"}`, map[string]string{"X-CSRF": "true"}, 403,
			"csrf_rejected"},
		{"cross-site", alice, `{"grant":"tts"}`,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
			403, "csrf_rejected"},
		{"same-site", alice, `{"grant":"tts"}`, map[string]string{"Sec-Fetch-Site": "same-site"},
			403, "csrf_rejected"},
		{"user-typed", alice, `{"grant":"tts"}`, map[string]string{"Sec-Fetch-Site": "none"},
			403, "csrf_rejected"},
		{"origin null", alice, `{"grant":"tts"}`, withOrigin("null"), 403, "csrf_rejected"},
		{"origin suffix lookalike", alice, `{"grant":"tts"}`,
			withOrigin(h.origin + ".evil.example"), 403, "csrf_rejected"},
		{"origin wrong scheme", alice, `{"grant":"tts"}`, withOrigin("https://" + h.host), 403,
			"csrf_rejected"},
		{"origin wrong port", alice, `{"grant":"tts"}`,
			withOrigin(strings.TrimSuffix(h.origin, port) + "1"), 403, "csrf_rejected"},
		{"origin with userinfo", alice, `{"grant":"tts"}`, withOrigin("http://evil@" + h.host),
			403, "csrf_rejected"},
		{"origin trailing slash", alice, `{"grant":"tts"}`, withOrigin(h.origin + "/"), 403,
			"csrf_rejected"},
		{"origin localhost alias", alice, `{"grant":"tts"}`,
			withOrigin("http://localhost:" + port), 403, "csrf_rejected"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cookies []*http.Cookie
			if tt.sess != nil {
				cookies = append(cookies, tt.sess)
			}
			r := h.do(req{path: "/api/token", body: tt.body, header: tt.header, cookies: cookies})
			if r.status != tt.status || r.code() != tt.code {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if len(r.header.Values("Set-Cookie")) != 0 {
				t.Errorf("a refused request set cookies: %v", r.header.Values("Set-Cookie"))
			}
		})
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 0 {
		t.Fatalf("upstream saw %d mints from refused requests", n)
	}

	accepted := []struct {
		name   string
		sess   *http.Cookie
		body   string
		header map[string]string
		ttl    int
	}{
		{"default TTL", alice, `{"grant":"tts"}`, nil, 300},
		{"null expires_in", alice, `{"grant":"tts","expires_in":null}`, nil, 300},
		{"smallest", alice, `{"grant":"tts","expires_in":2}`, nil, 2},
		{"largest", alice, `{"grant":"tts","expires_in":3600}`, nil, 3600},
		{"user max", bob, `{"grant":"tts","expires_in":600}`, nil, 600},
		{"exact Origin, no fetch metadata", alice, `{"grant":"tts"}`, withOrigin(h.origin), 300},
		{"no Origin, no fetch metadata", alice, `{"grant":"tts"}`, noFetchMeta, 300},
		{"charset utf-8", alice, `{"grant":"tts"}`,
			map[string]string{"Content-Type": "application/json; charset=UTF-8"}, 300},
	}
	for _, tt := range accepted {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(req{path: "/api/token", body: tt.body, header: tt.header,
				cookies: []*http.Cookie{tt.sess}})
			left := tt.ttl - 1 // token.ExpiryResolution
			if r.status != 200 || !strings.Contains(r.body, fmt.Sprintf(`"expires_in":%d`, left)) {
				t.Errorf("got %d %s, want 200 with expires_in %d", r.status, r.body, left)
			}
		})
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != len(accepted) {
		t.Errorf("upstream saw %d mints, want %d", n, len(accepted))
	}
}

func TestDefaultTTLIsClampedToTheUserMaximum(t *testing.T) {
	h := newHarness(t, func(c *api.Config) { c.TokenTTL = 900 * time.Second })
	r, c := h.mint(h.login("bob", "bob-pw"), `{"grant":"tts"}`)
	if r.status != 200 || !strings.Contains(r.body, `"expires_in":599`) {
		t.Errorf("got %d %s, want expires_in 599 (600 less the expiry resolution)", r.status, r.body)
	}
	if c == nil {
		t.Fatal("no cookie")
	}
}

func TestMintRateLimitPerUser(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.MintLimit = api.RateLimit{Every: 2 * time.Second, Burst: 3}
	})
	alice := h.login("alice", "alice-pw")
	bob := h.login("bob", "bob-pw")

	for i := range 3 {
		if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 200 {
			t.Fatalf("mint %d: %d", i, r.status)
		}
	}
	r, _ := h.mint(alice, `{"grant":"tts"}`)
	if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "2" {
		t.Errorf("4th mint: %d %s Retry-After %q, want 429 rate_limited 2",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	if r, _ := h.mint(bob, `{"grant":"tts"}`); r.status != 200 {
		t.Errorf("bob was limited by alice's bucket: %d", r.status)
	}

	h.clk.Advance(2 * time.Second)
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 200 {
		t.Errorf("after the refill: %d", r.status)
	}
	up, logged := len(h.fake.RequestsTo(sectest.RouteMint)), len(h.logs.Events(t, "token_minted"))
	if up != 5 || logged != 5 {
		t.Errorf("upstream mints %d, token_minted events %d, want 5 and 5", up, logged)
	}
}

func TestMintUpstreamFailures(t *testing.T) {
	tests := []struct {
		name      string
		status    int
		body      string
		want      int
		code      string
		retryWant string
	}{
		{"upstream 500", 500, `{"error_code":null,"title":"Oops","message":"broken"}`, 502,
			"upstream_error", ""},
		{"upstream 401 (bad key)", 401, "Unauthorized: invalid key " + sectest.CanaryKey, 502,
			"upstream_error", ""},
		{"upstream 429", 429, `{"error_code":"concurrency_limited","title":"Busy","message":"x"}`,
			429, "rate_limited", "9"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t)
			h.fake.Handle(sectest.RouteMint, http.HandlerFunc(func(w http.ResponseWriter,
				_ *http.Request) {
				w.Header().Set("Retry-After", "9")
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			r, c := h.mint(h.login("alice", "alice-pw"), `{"grant":"tts"}`)
			if r.status != tt.want || r.code() != tt.code || c != nil {
				t.Errorf("got %d %s cookie=%v, want %d %s and no cookie", r.status, r.body,
					c != nil, tt.want, tt.code)
			}
			if tt.retryWant != "" && r.header.Get("Retry-After") != tt.retryWant {
				t.Errorf("Retry-After %q", r.header.Get("Retry-After"))
			}
			if !strings.Contains(r.body, fmt.Sprintf(`"status":%d`, tt.status)) {
				t.Errorf("no upstream object in %s", r.body)
			}
			if len(h.logs.Events(t, "token_mint_failed")) != 1 ||
				len(h.logs.Events(t, "token_minted")) != 0 {
				t.Errorf("logs: %s", h.logs.String())
			}
		})
	}
}

func TestLoginRotatesTheSessionID(t *testing.T) {
	h := newHarness(t)
	first := h.login("alice", "alice-pw")
	second := h.login("alice", "alice-pw", first)
	if first.Value == second.Value {
		t.Fatal("login kept the session id")
	}
	if len(second.Value) < 43 {
		t.Errorf("session id %d chars, want 256 random bits", len(second.Value))
	}

	r := h.do(req{method: "GET", path: "/api/session", cookies: []*http.Cookie{first}})
	if r.status != 401 || r.code() != "no_session" {
		t.Errorf("old id after login: %d %s, want 401 no_session", r.status, r.body)
	}
	r = h.do(req{method: "GET", path: "/api/session", cookies: []*http.Cookie{second}})
	if r.status != 200 || !strings.Contains(r.body, `"user":"alice"`) {
		t.Errorf("new id: %d %s", r.status, r.body)
	}

	// A planted id the server never issued is never adopted.
	planted := &http.Cookie{Name: session.CookieName, Value: session.NewID()}
	third := h.login("alice", "alice-pw", planted)
	if third.Value == planted.Value {
		t.Error("login adopted a client-chosen session id")
	}
}

func TestLogoutClearsEverything(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)
	all := []*http.Cookie{sess, tts}

	r := h.do(req{path: "/api/logout", cookies: all})
	if r.status != http.StatusNoContent {
		t.Fatalf("logout: %d %s", r.status, r.body)
	}
	names := []string{session.CookieName}
	for _, g := range token.Grants() {
		names = append(names, seal.CookieName(g))
	}
	for _, name := range names {
		c := r.cookie(t, name)
		if c == nil {
			t.Errorf("logout did not clear %s", name)
			continue
		}
		checkPrefixCookie(t, c) // a deletion without the prefix attributes is ignored
		if c.MaxAge >= 0 || c.Value != "" {
			t.Errorf("%s: Max-Age %d value %q, want a deletion", name, c.MaxAge, c.Value)
		}
	}
	if len(h.logs.Events(t, "logout")) != 1 {
		t.Error("no logout event")
	}

	if r := h.do(req{method: "GET", path: "/api/session", cookies: all}); r.status != 401 {
		t.Errorf("session after logout: %d", r.status)
	}
	r = h.do(req{path: "/cartesia/tts/bytes", body: `{}`, cookies: all})
	if r.status != 401 || r.code() != "no_session" {
		t.Errorf("proxy after logout: %d %s", r.status, r.body)
	}
	if r, _ := h.mint(sess, `{"grant":"tts"}`); r.status != 401 {
		t.Errorf("mint after logout: %d", r.status)
	}

	// Even a new session cannot use the old token cookie: it was sealed for the old id.
	fresh := h.login("alice", "alice-pw")
	r = h.do(req{path: "/cartesia/tts/bytes", body: `{}`, cookies: []*http.Cookie{fresh, tts}})
	if r.code() != "no_token" {
		t.Errorf("old token with a new session: %d %s, want no_token", r.status, r.body)
	}
	if len(h.fake.RequestsTo(sectest.RouteTTSBytes)) != 0 {
		t.Error("upstream saw a proxied call after logout")
	}
}

func TestSessionTimeouts(t *testing.T) {
	h := newHarness(t)
	get := func(c *http.Cookie) int {
		return h.do(req{method: "GET", path: "/api/session", cookies: []*http.Cookie{c}}).status
	}

	idle := h.login("alice", "alice-pw")
	h.clk.Advance(59 * time.Minute)
	if s := get(idle); s != 200 {
		t.Fatalf("59 min idle: %d", s)
	}
	h.clk.Advance(time.Hour) // an hour after the last use
	if s := get(idle); s != 401 {
		t.Errorf("an hour idle: %d, want 401", s)
	}

	busy := h.login("alice", "alice-pw")
	for elapsed := 50 * time.Minute; elapsed < 12*time.Hour; elapsed += 50 * time.Minute {
		h.clk.Advance(50 * time.Minute)
		if s := get(busy); s != 200 {
			t.Fatalf("busy session refused after %v: %d", elapsed, s)
		}
	}
	h.clk.Advance(50 * time.Minute) // past 12 h since sign-in
	if s := get(busy); s != 401 {
		t.Errorf("busy session past the absolute timeout: %d, want 401", s)
	}
}

func TestLoginFailuresAndRateLimits(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.LoginUserLimit = api.RateLimit{Every: time.Minute, Burst: 3}
		// Six well-formed attempts; malformed bodies are refused before any bucket.
		c.LoginIPLimit = api.RateLimit{Every: time.Minute, Burst: 6}
	})
	attempt := func(user, pw string) resp {
		return h.do(req{path: "/api/login",
			body: fmt.Sprintf(`{"username":%q,"password":%q}`, user, pw)})
	}

	r := attempt("alice", "wrong-pw-CANARYPW")
	if r.status != 401 || r.code() != "invalid_credentials" {
		t.Errorf("wrong password: %d %s", r.status, r.body)
	}
	if r := attempt("nobody", "x"); r.status != 401 || r.code() != "invalid_credentials" {
		t.Errorf("unknown user: %d %s", r.status, r.body)
	}
	for _, body := range []string{`{}`, `{"username":"alice"}`, `{"username":1,"password":"x"}`,
		`{"username":"alice","password":"x","admin":true}`} {
		if r := h.do(req{path: "/api/login", body: body}); r.status != 400 || r.code() != "bad_request" {
			t.Errorf("%s: %d %s", body, r.status, r.body)
		}
	}
	if strings.Contains(h.logs.String(), "CANARYPW") {
		t.Error("a password reached the log")
	}
	if len(h.logs.Events(t, "login_failed")) != 2 {
		t.Errorf("want 2 login_failed events: %s", h.logs.String())
	}

	_ = attempt("alice", "wrong")
	_ = attempt("alice", "wrong") // alice's bucket (3) is now empty
	r = attempt("alice", "alice-pw")
	if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Errorf("4th attempt for alice: %d %s", r.status, r.body)
	}
	if r := attempt("bob", "bob-pw"); r.status != 200 {
		t.Errorf("bob limited by alice's attempts: %d", r.status)
	}
	if r := attempt("bob", "bob-pw"); r.status != 429 {
		t.Errorf("7th well-formed attempt from one address: %d, want 429", r.status)
	}

	h.clk.Advance(3 * time.Minute)
	if r := attempt("alice", "alice-pw"); r.status != 200 {
		t.Errorf("after the refill: %d", r.status)
	}
}

func TestHostAllowlist(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.AllowedHosts = []string{c.PublicOrigin[len("http://"):], "voice.example"}
	})
	sess := h.login("alice", "alice-pw")

	for _, path := range []string{"/", "/api/info", "/healthz", "/voxgate.wasm"} {
		r := h.do(req{method: "GET", path: path, header: map[string]string{"Host": "attacker.test"}})
		if r.status != 421 || r.code() != "host_rejected" {
			t.Errorf("GET %s with a foreign Host: %d %s", path, r.status, r.body)
		}
	}
	r := h.do(req{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{sess},
		header: map[string]string{"Host": "attacker.test:80", "Sec-Fetch-Site": "",
			"Origin": "http://attacker.test:80"}})
	if r.status != 421 {
		t.Errorf("rebinding mint: %d", r.status)
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 0 {
		t.Errorf("upstream saw %d mints", n)
	}
	r = h.do(req{method: "GET", path: "/healthz", header: map[string]string{"Host": "VOICE.example"}})
	if r.status != 200 {
		t.Errorf("listed host (any case): %d", r.status)
	}
	if n := len(h.logs.Events(t, "security_rejected")); n != 5 {
		t.Errorf("%d security_rejected events, want one per rejection (5)", n)
	}
}

func TestPagesOnAnAliasHostRedirectToThePublicOrigin(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.AllowedHosts = []string{c.PublicOrigin[len("http://"):], "localhost:9"}
	})

	for _, path := range []string{"/", "/app.js", "/voxgate.wasm?v=1"} {
		r := h.do(req{method: "GET", path: path, header: map[string]string{"Host": "localhost:9"}})
		if r.status != http.StatusPermanentRedirect || r.header.Get("Location") != h.origin+path {
			t.Errorf("GET %s on the alias: %d Location %q, want 308 to %s%s", path, r.status,
				r.header.Get("Location"), h.origin, path)
		}
	}

	// API calls, health checks and the public host itself are served, not redirected.
	for _, c := range []struct{ path, host string }{
		{"/api/info", "localhost:9"}, {"/healthz", "localhost:9"}, {"/api/info", ""},
	} {
		hdr := map[string]string{}
		if c.host != "" {
			hdr["Host"] = c.host
		}
		if r := h.do(req{method: "GET", path: c.path, header: hdr}); r.status != 200 {
			t.Errorf("GET %s (Host %q): %d, want 200", c.path, c.host, r.status)
		}
	}
}

func TestProxyThroughTheAPI(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)

	r := h.do(req{path: "/cartesia/tts/bytes?access_token=evil",
		body: `{"transcript":"hello"}`, cookies: []*http.Cookie{sess, tts}})
	if r.status != 200 || r.body != string(sectest.Audio()) ||
		r.header.Get("Content-Type") != "audio/wav" {
		t.Fatalf("proxy: %d %q %v", r.status, r.body, r.header)
	}
	if r.header.Get("Cache-Control") != "no-store" {
		t.Error("proxied audio is cacheable")
	}
	calls := h.fake.RequestsTo(sectest.RouteTTSBytes)
	if len(calls) != 1 || calls[0].RawQuery != "" || calls[0].Header.Get("Cookie") != "" ||
		calls[0].Header.Get("X-Csrf") != "" {
		t.Fatalf("upstream saw %+v", calls)
	}
	if got := calls[0].Header.Get("Authorization"); got != "Bearer "+sectest.TokenPrefix+"1" {
		t.Errorf("upstream Authorization %q", got)
	}

	big := `{"t":"` + strings.Repeat("a", 64<<10) + `"}`
	r = h.do(req{path: "/cartesia/tts/bytes", body: big, cookies: []*http.Cookie{sess, tts}})
	if r.status != 413 {
		t.Errorf("oversize body: %d %s", r.status, r.body)
	}
	if r := h.do(req{path: "/cartesia/tts/bytes", body: `{}`, cookies: []*http.Cookie{sess, tts},
		header: map[string]string{"X-CSRF": ""}}); r.status != 403 {
		t.Errorf("proxy without X-CSRF: %d", r.status)
	}

	h.clk.Advance(300 * time.Second)
	r = h.do(req{path: "/cartesia/tts/bytes", body: `{}`, cookies: []*http.Cookie{sess, tts}})
	if r.status != 401 || r.code() != "token_expired" {
		t.Errorf("after the TTL: %d %s, want 401 token_expired", r.status, r.body)
	}
	if n := len(h.fake.RequestsTo(sectest.RouteTTSBytes)); n != 1 {
		t.Errorf("upstream saw %d proxied calls, want only the first", n)
	}
}

func TestMethodsAndUnknownRoutes(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		method, path, allow string
		status              int
		code                string
	}{
		{"GET", "/api/token", "POST", 405, "method_not_allowed"},
		{"PUT", "/api/login", "POST", 405, "method_not_allowed"},
		{"GET", "/api/logout", "POST", 405, "method_not_allowed"},
		{"OPTIONS", "/api/token", "POST", 405, "method_not_allowed"},
		{"DELETE", "/cartesia/tts/bytes", "POST", 405, "method_not_allowed"},
		{"POST", "/api/session", "GET, HEAD", 405, "method_not_allowed"},
		{"POST", "/", "GET, HEAD", 405, "method_not_allowed"},
		{"GET", "/api/nope", "", 404, "not_found"},
		{"GET", "/cartesia/voices", "", 404, "not_found"},
		{"GET", "/debug/pprof/", "", 404, "not_found"},
		{"GET", "/dist/voxgate.wasm", "", 404, "not_found"},
	}
	for _, tt := range tests {
		r := h.do(req{method: tt.method, path: tt.path})
		if r.status != tt.status || r.code() != tt.code || r.header.Get("Allow") != tt.allow {
			t.Errorf("%s %s: %d %s Allow=%q, want %d %s Allow=%q", tt.method, tt.path, r.status,
				r.body, r.header.Get("Allow"), tt.status, tt.code, tt.allow)
		}
		if r.header.Get("Access-Control-Allow-Origin") != "" {
			t.Errorf("%s %s answered CORS headers", tt.method, tt.path)
		}
	}
}

func TestInfoHealthAndSession(t *testing.T) {
	h := newHarness(t)
	noCSRF := map[string]string{"X-CSRF": ""}
	r := h.do(req{method: "GET", path: "/healthz", header: noCSRF})
	if r.status != 200 || strings.TrimSpace(r.body) != `{"ok":true}` {
		t.Errorf("healthz: %d %s", r.status, r.body)
	}
	r = h.do(req{method: "GET", path: "/api/info", header: noCSRF})
	wantInfo := `{"upstream":"emulator","grants":["tts","stt","agent"]}`
	if r.status != 200 || strings.TrimSpace(r.body) != wantInfo {
		t.Errorf("info: %d %s", r.status, r.body)
	}
	r = h.do(req{method: "GET", path: "/api/info",
		header: map[string]string{"Sec-Fetch-Site": "cross-site"}})
	if r.status != 403 {
		t.Errorf("cross-site info: %d", r.status)
	}
	r = h.do(req{method: "GET", path: "/api/session"})
	if r.status != 401 || r.code() != "no_session" {
		t.Errorf("session without cookie: %d %s", r.status, r.body)
	}
	sess := h.login("bob", "bob-pw")
	r = h.do(req{method: "GET", path: "/api/session", cookies: []*http.Cookie{sess}, header: noCSRF})
	if r.status != 403 {
		t.Errorf("session without X-CSRF: %d", r.status)
	}
	r = h.do(req{method: "GET", path: "/api/session", cookies: []*http.Cookie{sess}})
	if r.status != 200 || !strings.Contains(r.body, `"grants":["tts"]`) {
		t.Errorf("session: %d %s", r.status, r.body)
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newHarness(t)
	wantCSP := "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src 'self'; " +
		"media-src 'self' blob:; img-src 'self' data:; style-src 'self'; object-src 'none'; " +
		"base-uri 'none'; frame-ancestors 'none'; form-action 'self'"

	paths := []string{"/", "/app.js", "/voxgate.wasm", "/api/info", "/nope", "/api/session"}
	for _, path := range paths {
		r := h.do(req{method: "GET", path: path})
		csp := r.header.Get("Content-Security-Policy")
		if csp != wantCSP {
			t.Errorf("%s: CSP %q", path, csp)
		}
		if strings.Contains(csp, "unsafe-eval'") && !strings.Contains(csp, "'wasm-unsafe-eval'") ||
			strings.Contains(strings.ReplaceAll(csp, "'wasm-unsafe-eval'", ""), "unsafe-") {
			t.Errorf("%s: CSP allows unsafe-eval or unsafe-inline", path)
		}
		for name, want := range map[string]string{
			"X-Content-Type-Options":       "nosniff",
			"Referrer-Policy":              "no-referrer",
			"Cross-Origin-Opener-Policy":   "same-origin",
			"Cross-Origin-Resource-Policy": "same-origin",
		} {
			if got := r.header.Get(name); got != want {
				t.Errorf("%s: %s = %q, want %q", path, name, got, want)
			}
		}
		if !strings.Contains(r.header.Get("Permissions-Policy"), "microphone=(self)") {
			t.Errorf("%s: Permissions-Policy %q", path, r.header.Get("Permissions-Policy"))
		}
		if r.header.Get("Strict-Transport-Security") != "" {
			t.Errorf("%s: HSTS on a plain-http loopback origin", path)
		}
		api := strings.HasPrefix(path, "/api/")
		if api && r.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", path, r.header.Get("Cache-Control"))
		}
	}

	r := h.do(req{method: "GET", path: "/"})
	if r.header.Get("Content-Type") != "text/html; charset=utf-8" ||
		!strings.Contains(r.body, "voxgate") {
		t.Errorf("index: %v %q", r.header, r.body)
	}
}

func TestHSTSOnlyForHTTPSPublicOrigins(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.PublicOrigin = "https://voice.example"
		c.AllowedHosts = []string{"voice.example"}
	})
	r := h.do(req{method: "GET", path: "/healthz", header: map[string]string{"Host": "voice.example"}})
	if r.header.Get("Strict-Transport-Security") != "max-age=31536000" {
		t.Errorf("HSTS %q", r.header.Get("Strict-Transport-Security"))
	}
}

func TestStaticFiles(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		path, accept, ctype, encoding, body string
	}{
		{"/voxgate.wasm", "gzip, deflate, br, zstd", "application/wasm", "br", "brotli-bundle"},
		{"/voxgate.wasm", "BR;q=0.5", "application/wasm", "br", "brotli-bundle"},
		{"/voxgate.wasm", "gzip", "application/wasm", "", "\x00asm-plain-bundle"},
		{"/voxgate.wasm", "br;q=0, gzip", "application/wasm", "", "\x00asm-plain-bundle"},
		{"/voxgate.wasm", "", "application/wasm", "", "\x00asm-plain-bundle"},
		{"/wasm_exec.js", "br", "text/javascript; charset=utf-8", "", "// go wasm_exec"},
		{"/voxgate.js", "", "text/javascript; charset=utf-8", "", "export function load() {}"},
		{"/voxgate.d.ts", "", "text/plain; charset=utf-8", "", "export declare function load(): void;"},
		{"/style.css", "", "text/css; charset=utf-8", "", "body{}"},
	}
	for _, tt := range tests {
		r := h.do(req{method: "GET", path: tt.path,
			header: map[string]string{"Accept-Encoding": tt.accept}})
		if r.status != 200 || r.header.Get("Content-Type") != tt.ctype ||
			r.header.Get("Content-Encoding") != tt.encoding || r.body != tt.body {
			t.Errorf("%s (Accept-Encoding %q): %d type %q encoding %q body %q", tt.path, tt.accept,
				r.status, r.header.Get("Content-Type"), r.header.Get("Content-Encoding"), r.body)
		}
		if tt.path == "/voxgate.wasm" && r.header.Get("Vary") != "Accept-Encoding" {
			t.Errorf("%s: Vary %q", tt.path, r.header.Get("Vary"))
		}
	}

	// Revalidation with the ETag answers 304 without the body.
	first := h.do(req{method: "GET", path: "/app.js"})
	again := h.do(req{method: "GET", path: "/app.js",
		header: map[string]string{"If-None-Match": first.header.Get("ETag")}})
	if first.header.Get("ETag") == "" || again.status != http.StatusNotModified {
		t.Errorf("ETag %q, revalidation %d", first.header.Get("ETag"), again.status)
	}
}

func TestStaticWithoutABuild(t *testing.T) {
	fs := staticFS()
	delete(fs, "dist/voxgate.wasm")
	delete(fs, "dist/voxgate.wasm.br")
	delete(fs, "dist/wasm_exec.js")
	h := newHarness(t, func(c *api.Config) { c.Static = fs })

	for _, path := range []string{"/voxgate.wasm", "/wasm_exec.js"} {
		r := h.do(req{method: "GET", path: path, header: map[string]string{"Accept-Encoding": "br"}})
		if r.status != 404 || r.code() != "not_found" || !strings.Contains(r.body, "make build") ||
			r.header.Get("Content-Encoding") != "" {
			t.Errorf("%s unbuilt: %d %v %s", path, r.status, r.header, r.body)
		}
	}

	// Only the plain bundle built: br clients get it uncompressed.
	fs["dist/voxgate.wasm"] = staticFS()["dist/voxgate.wasm"]
	h2 := newHarness(t, func(c *api.Config) { c.Static = fs })
	r := h2.do(req{method: "GET", path: "/voxgate.wasm",
		header: map[string]string{"Accept-Encoding": "br"}})
	if r.status != 200 || r.header.Get("Content-Encoding") != "" || r.body != "\x00asm-plain-bundle" {
		t.Errorf("plain only: %d %v", r.status, r.header)
	}
}

func TestNewRejectsBadConfig(t *testing.T) {
	for _, origin := range []string{"", "127.0.0.1:8080", "http://x/path", "ftp://x", "http://u@x"} {
		if _, err := api.New(api.Config{PublicOrigin: origin}); err == nil {
			t.Errorf("New accepted public origin %q", origin)
		}
	}
}
