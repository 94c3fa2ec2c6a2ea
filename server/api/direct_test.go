package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// directTokenPrefix starts every token directMinter hands out. It differs from
// sectest.TokenPrefix on purpose: the harness fails a test whose responses show that
// prefix, and a direct token is meant to be in a response. The tests check the logs for
// it instead.
const directTokenPrefix = "eyJhbGciOiJIUzI1NiJ9.direct-CANARY-"

// directMinter mints directTokenPrefix<n> tokens on the test clock, remembering each call.
type directMinter struct {
	mu    sync.Mutex
	now   func() time.Time
	calls []mintCall
}

func (m *directMinter) Mint(_ context.Context, g token.Grant, ttl time.Duration) (
	token.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, mintCall{g, ttl})
	return token.Token{Value: token.NewValue(fmt.Sprintf("%s%d", directTokenPrefix, len(m.calls))),
		Grant: g, ExpiresAt: m.now().Add(ttl - token.ExpiryResolution)}, nil
}

func (m *directMinter) taken() []mintCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	return slices.Clone(m.calls)
}

// newDirectHarness is the api handler with direct mode on for tts and agent (not stt), a
// wide direct rate limit, directMinter as its minter and three users: alice (every grant, any agent, 3600 s), bob
// (tts only, at most 30 s) and carol (every grant, but only the agent "support").
func newDirectHarness(t *testing.T, opts ...harnessOption) (*harness, *directMinter) {
	t.Helper()
	m := &directMinter{}
	alice, err := session.NewUser("alice", "alice-pw", token.Grants(), time.Hour, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := session.NewUser("bob", "bob-pw", []token.Grant{token.TTS}, 30*time.Second,
		bcrypt.MinCost)
	carol, _ := session.NewUser("carol", "carol-pw", token.Grants(), time.Hour, bcrypt.MinCost)
	carol.Agents = []string{"support"}
	users, err := session.NewDirectory([]session.User{alice, bob, carol})
	if err != nil {
		t.Fatal(err)
	}

	base := func(c *api.Config) {
		c.DirectGrants = []token.Grant{token.TTS, token.Agent}
		c.DirectMintLimit = api.RateLimit{Every: time.Millisecond, Burst: 1000}
		c.Users = users
		c.Minter = m
		m.now = c.Now
	}
	h := newHarness(t, append([]harnessOption{base}, opts...)...)
	return h, m
}

// directive returns one directive of a Content-Security-Policy, without its name.
func directive(csp, name string) string {
	for part := range strings.SplitSeq(csp, ";") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(part), name+" "); ok {
			return v
		}
	}
	return ""
}

func TestDirectModeIsOffByDefault(t *testing.T) {
	h := newHarness(t)
	alice := h.login("alice", "alice-pw")

	unknown := h.do(req{path: "/api/no-such-route", body: `{"grant":"tts"}`,
		cookies: []*http.Cookie{alice}})
	r := h.do(req{path: "/api/token/direct", body: `{"grant":"tts"}`,
		cookies: []*http.Cookie{alice}})
	if r.status != 404 || r.code() != "not_found" || r.body != unknown.body {
		t.Errorf("direct route when off: %d %s, want the unknown route's 404 %s",
			r.status, r.body, unknown.body)
	}
	if len(r.header.Values("Set-Cookie")) != 0 || strings.Contains(r.body, "token\"") {
		t.Errorf("direct route when off answered more than 404: %v %s", r.header, r.body)
	}
	if g := h.do(req{method: "GET", path: "/api/token/direct"}); g.status != 404 {
		t.Errorf("GET direct route when off: %d, want 404 like any unknown route", g.status)
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 0 {
		t.Errorf("upstream saw %d mints", n)
	}

	info := h.do(req{method: "GET", path: "/api/info"})
	if strings.Contains(info.body, "direct") {
		t.Errorf("info when off mentions direct mode: %s", info.body)
	}
	for _, path := range []string{"/", "/api/info"} {
		csp := h.do(req{method: "GET", path: path}).header.Get("Content-Security-Policy")
		if got := directive(csp, "connect-src"); got != "'self'" {
			t.Errorf("%s: connect-src %q, want exactly 'self'", path, got)
		}
	}
}

func TestDirectTokenGuards(t *testing.T) {
	h, m := newDirectHarness(t)
	alice := h.login("alice", "alice-pw")
	bob := h.login("bob", "bob-pw")
	carol := h.login("carol", "carol-pw")

	tests := []struct {
		name   string
		method string
		sess   *http.Cookie
		body   string
		header map[string]string
		status int
		code   string
	}{
		{"no X-CSRF", "", alice, `{"grant":"tts"}`, map[string]string{"X-CSRF": ""}, 403,
			"csrf_rejected"},
		{"cross-site", "", alice, `{"grant":"tts"}`,
			map[string]string{"Sec-Fetch-Site": "cross-site", "Origin": "https://evil.example"},
			403, "csrf_rejected"},
		{"foreign Origin", "", alice, `{"grant":"tts"}`,
			map[string]string{"Sec-Fetch-Site": "", "Origin": "https://evil.example"}, 403,
			"csrf_rejected"},
		{"text/plain", "", alice, `{"grant":"tts"}`,
			map[string]string{"Content-Type": "text/plain"}, 415, "unsupported_media_type"},
		{"GET", "GET", alice, "", nil, 405, "method_not_allowed"},
		{"no session", "", nil, `{"grant":"tts"}`, nil, 401, "no_session"},
		{"unknown grant", "", alice, `{"grant":"admin"}`, nil, 400, "bad_request"},
		{"no grant", "", alice, `{}`, nil, 400, "bad_request"},
		{"unknown field", "", alice, `{"grant":"tts","token":"x"}`, nil, 400, "bad_request"},
		{"grant not direct", "", alice, `{"grant":"stt"}`, nil, 403, "direct_not_allowed"},
		{"grant not in policy", "", bob, `{"grant":"agent"}`, nil, 403, "grant_forbidden"},
		{"agent with an agent list", "", carol, `{"grant":"agent"}`, nil, 403,
			"direct_not_allowed"},
		{"expires_in 0", "", alice, `{"grant":"tts","expires_in":0}`, nil, 400, "bad_request"},
		{"expires_in -1", "", alice, `{"grant":"tts","expires_in":-1}`, nil, 400, "bad_request"},
		{"expires_in 1", "", alice, `{"grant":"tts","expires_in":1}`, nil, 400, "bad_request"},
		{"expires_in 61 over DIRECT_TOKEN_TTL", "", alice, `{"grant":"tts","expires_in":61}`,
			nil, 400, "bad_request"},
		{"expires_in 121", "", alice, `{"grant":"tts","expires_in":121}`, nil, 400,
			"bad_request"},
		{"expires_in string", "", alice, `{"grant":"tts","expires_in":"60"}`, nil, 400,
			"bad_request"},
		{"expires_in fraction", "", alice, `{"grant":"tts","expires_in":60.5}`, nil, 400,
			"bad_request"},
		{"expires_in over the user's max", "", bob, `{"grant":"tts","expires_in":31}`, nil, 400,
			"bad_request"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var cookies []*http.Cookie
			if tt.sess != nil {
				cookies = append(cookies, tt.sess)
			}
			r := h.do(req{method: tt.method, path: "/api/token/direct", body: tt.body,
				header: tt.header, cookies: cookies})
			if r.status != tt.status || r.code() != tt.code {
				t.Errorf("got %d %s, want %d %s", r.status, r.body, tt.status, tt.code)
			}
			if len(r.header.Values("Set-Cookie")) != 0 || strings.Contains(r.body, "eyJ") {
				t.Errorf("a refused request got a cookie or a token: %v %s", r.header, r.body)
			}
		})
	}
	if calls := m.taken(); len(calls) != 0 {
		t.Fatalf("refused requests minted %v", calls)
	}

	// What is accepted, and for how long: the default is min(TOKEN_TTL 300,
	// DIRECT_TOKEN_TTL 60, the user's max), answered one second short.
	accepted := []struct {
		name string
		sess *http.Cookie
		body string
		ttl  int
	}{
		{"default", alice, `{"grant":"tts"}`, 60},
		{"null expires_in", alice, `{"grant":"tts","expires_in":null}`, 60},
		{"default clamped to the user's max", bob, `{"grant":"tts"}`, 30},
		{"smallest", alice, `{"grant":"tts","expires_in":2}`, 2},
		{"largest", alice, `{"grant":"tts","expires_in":60}`, 60},
		{"user's max", bob, `{"grant":"tts","expires_in":30}`, 30},
		{"agent with any agent", alice, `{"grant":"agent"}`, 60},
	}
	for _, tt := range accepted {
		r := h.do(req{path: "/api/token/direct", body: tt.body, cookies: []*http.Cookie{tt.sess}})
		if r.status != 200 || !strings.Contains(r.body, fmt.Sprintf(`"expires_in":%d,`, tt.ttl-1)) {
			t.Errorf("%s: %d %s, want 200 with expires_in %d", tt.name, r.status, r.body, tt.ttl-1)
		}
	}
	calls := m.taken()
	if len(calls) != len(accepted) {
		t.Fatalf("%d mints, want %d", len(calls), len(accepted))
	}
	for i, tt := range accepted {
		if calls[i].ttl != time.Duration(tt.ttl)*time.Second {
			t.Errorf("%s: minted for %v, want %d s", tt.name, calls[i].ttl, tt.ttl)
		}
	}
}

func TestDirectDefaultLifetimeIsAlsoClampedToTokenTTL(t *testing.T) {
	h, m := newDirectHarness(t, func(c *api.Config) {
		c.TokenTTL = 45 * time.Second
		c.DirectTokenTTL = 90 * time.Second
	})
	alice := h.login("alice", "alice-pw")
	r := h.do(req{path: "/api/token/direct", body: `{"grant":"tts"}`, cookies: []*http.Cookie{alice}})
	if r.status != 200 || !strings.Contains(r.body, `"expires_in":44,`) {
		t.Errorf("default: %d %s, want expires_in 44 (TOKEN_TTL 45 less one)", r.status, r.body)
	}
	// An explicit lifetime may still go up to DIRECT_TOKEN_TTL.
	r = h.do(req{path: "/api/token/direct", body: `{"grant":"tts","expires_in":90}`,
		cookies: []*http.Cookie{alice}})
	if r.status != 200 || !strings.Contains(r.body, `"expires_in":89,`) {
		t.Errorf("explicit 90: %d %s", r.status, r.body)
	}
	if calls := m.taken(); len(calls) != 2 || calls[0].ttl != 45*time.Second ||
		calls[1].ttl != 90*time.Second {
		t.Errorf("mints %v, want 45 s then 90 s", calls)
	}
}

func TestDirectTokenAnswer(t *testing.T) {
	h, m := newDirectHarness(t)
	alice := h.login("alice", "alice-pw")
	now := h.clk.Now()

	r := h.do(req{path: "/api/token/direct", body: `{"grant":"tts","expires_in":60}`,
		cookies: []*http.Cookie{alice}})
	if r.status != 200 {
		t.Fatalf("direct mint: %d %s", r.status, r.body)
	}
	var keys map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.body), &keys); err != nil {
		t.Fatal(err)
	}
	var names []string
	for k := range keys {
		names = append(names, k)
	}
	slices.Sort(names)
	want := []string{"expires_at", "expires_in", "grant", "grants", "server_time", "token"}
	if !slices.Equal(names, want) {
		t.Errorf("body keys %v, want %v", names, want)
	}

	var body struct {
		Token      string   `json:"token"`
		Grant      string   `json:"grant"`
		Grants     []string `json:"grants"`
		ExpiresIn  int      `json:"expires_in"`
		ExpiresAt  int64    `json:"expires_at"`
		ServerTime int64    `json:"server_time"`
	}
	if err := json.Unmarshal([]byte(r.body), &body); err != nil {
		t.Fatal(err)
	}
	if body.Token != directTokenPrefix+"1" || body.Grant != "tts" ||
		!slices.Equal(body.Grants, []string{"tts"}) || body.ExpiresIn != 59 ||
		body.ExpiresAt != now.Add(59*time.Second).UnixMilli() ||
		body.ServerTime != now.UnixMilli() {
		t.Errorf("body %+v, want the minted token for tts, 59 s, expiring at %d, server time %d",
			body, now.Add(59*time.Second).UnixMilli(), now.UnixMilli())
	}
	if calls := m.taken(); len(calls) != 1 || calls[0] != (mintCall{token.TTS, 60 * time.Second}) {
		t.Errorf("minter calls %v, want one tts for 60 s", calls)
	}

	if r.header.Get("Cache-Control") != "no-store" || r.header.Get("Pragma") != "no-cache" {
		t.Errorf("Cache-Control %q, Pragma %q; want no-store and no-cache",
			r.header.Get("Cache-Control"), r.header.Get("Pragma"))
	}
	if _, ok := r.header["Set-Cookie"]; ok {
		t.Errorf("the direct answer has a Set-Cookie header: %q", r.header.Values("Set-Cookie"))
	}

	events := h.logs.Events(t, "token_issued_direct")
	if len(events) != 1 {
		t.Fatalf("%d token_issued_direct events, want 1", len(events))
	}
	e := events[0]
	if e["user"] != "alice" || e["grant"] != "tts" || e["ttl_s"] != float64(59) ||
		e["session"] != session.Fingerprint(alice.Value) ||
		e["token_fingerprint"] != token.NewValue(body.Token).Fingerprint() {
		t.Errorf("audit event %v", e)
	}
	if logs := h.logs.String(); strings.Contains(logs, directTokenPrefix) ||
		strings.Contains(logs, "direct-CANARY") {
		t.Errorf("the log holds the direct token: %s", logs)
	}

	// The cookie route is unchanged next to it: it still never answers a token.
	cookie, c := h.mint(alice, `{"grant":"tts"}`)
	if cookie.status != 200 || c == nil || c.Name != seal.CookieName(token.TTS) ||
		strings.Contains(cookie.body, "token\"") {
		t.Errorf("cookie mint beside direct mode: %d %s", cookie.status, cookie.body)
	}
}

func TestDirectMintLimitIsSeparateFromTheCookieLimit(t *testing.T) {
	h, _ := newDirectHarness(t, func(c *api.Config) {
		c.MintLimit = api.RateLimit{Every: 2 * time.Second, Burst: 3}
		c.DirectMintLimit = api.RateLimit{Every: 10 * time.Second, Burst: 2}
	})
	alice := h.login("alice", "alice-pw")
	direct := func() resp {
		return h.do(req{path: "/api/token/direct", body: `{"grant":"tts"}`,
			cookies: []*http.Cookie{alice}})
	}

	for i := range 3 {
		if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 200 {
			t.Fatalf("cookie mint %d: %d", i, r.status)
		}
	}
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 429 {
		t.Fatalf("4th cookie mint: %d, want 429", r.status)
	}

	// The cookie bucket is empty; the direct one is untouched.
	for i := range 2 {
		if r := direct(); r.status != 200 {
			t.Fatalf("direct mint %d with the cookie bucket empty: %d %s", i, r.status, r.body)
		}
	}
	r := direct()
	if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "10" {
		t.Errorf("3rd direct mint: %d %s Retry-After %q, want 429 rate_limited 10",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	if len(h.logs.Events(t, "security_rejected")) == 0 ||
		!strings.Contains(h.logs.String(), `"reason":"direct_mint_rate_limited"`) {
		t.Errorf("no direct_mint_rate_limited rejection logged")
	}

	// Refilling the cookie bucket does not refill the direct one.
	h.clk.Advance(2 * time.Second)
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 200 {
		t.Errorf("cookie mint after its refill: %d", r.status)
	}
	if r := direct(); r.status != 429 {
		t.Errorf("direct mint 2 s later: %d, want 429", r.status)
	}
	h.clk.Advance(8 * time.Second)
	if r := direct(); r.status != 200 {
		t.Errorf("direct mint after its own refill: %d", r.status)
	}
}

func TestInfoDescribesDirectMode(t *testing.T) {
	h, _ := newDirectHarness(t)
	r := h.do(req{method: "GET", path: "/api/info", header: map[string]string{"X-CSRF": ""}})
	want := `{"upstream":"emulator","grants":["tts","stt","agent"],"direct":{"grants":["tts",` +
		`"agent"],"upstream":"` + h.fake.URL() + `","cartesia_version":"2026-03-01",` +
		`"max_ttl":60}}`
	if r.status != 200 || strings.TrimSpace(r.body) != want {
		t.Errorf("info: %d %s\nwant %s", r.status, r.body, want)
	}
}

func TestCSPListsTheUpstreamOnlyInDirectMode(t *testing.T) {
	h, _ := newDirectHarness(t)
	up := strings.TrimPrefix(h.fake.URL(), "http://")
	for _, path := range []string{"/", "/api/info", "/nope"} {
		csp := h.do(req{method: "GET", path: path}).header.Get("Content-Security-Policy")
		if got, want := directive(csp, "connect-src"),
			"'self' http://"+up+" ws://"+up; got != want {
			t.Errorf("%s: connect-src %q, want %q", path, got, want)
		}
		if directive(csp, "script-src") != "'self' 'wasm-unsafe-eval'" ||
			directive(csp, "default-src") != "'self'" {
			t.Errorf("%s: the rest of the CSP changed: %q", path, csp)
		}
	}

	https, _ := newDirectHarness(t, func(c *api.Config) {
		c.Upstream = "https://api.cartesia.example/"
	})
	csp := https.do(req{method: "GET", path: "/"}).header.Get("Content-Security-Policy")
	if got, want := directive(csp, "connect-src"),
		"'self' https://api.cartesia.example wss://api.cartesia.example"; got != want {
		t.Errorf("https upstream: connect-src %q, want %q", got, want)
	}
}

// minimalConfig is the smallest Config that New accepts; nothing in it is ever dialled.
func minimalConfig(t *testing.T) api.Config {
	t.Helper()
	users, err := session.NewDirectory(nil)
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := seal.NewRandom()
	valid := api.Config{
		PublicOrigin: "http://127.0.0.1:8080", Upstream: "http://127.0.0.1:9",
		UpstreamKind: api.UpstreamEmulator, CartesiaVersion: "2026-03-01",
		Minter: &directMinter{now: time.Now}, Sealer: sealer, Users: users, Static: staticFS(),
	}
	if _, err := api.New(valid); err != nil {
		t.Fatalf("the valid base config: %v", err)
	}
	return valid
}

func TestNewRejectsBadDirectConfig(t *testing.T) {
	valid := minimalConfig(t)

	tests := []struct {
		name   string
		change func(*api.Config)
	}{
		{"TTL over the 120 s cap", func(c *api.Config) { c.DirectTokenTTL = 121 * time.Second }},
		{"TTL of an hour", func(c *api.Config) { c.DirectTokenTTL = time.Hour }},
		{"TTL under 2 s", func(c *api.Config) { c.DirectTokenTTL = time.Second }},
		{"fractional TTL", func(c *api.Config) { c.DirectTokenTTL = 1500 * time.Millisecond }},
		{"unknown grant", func(c *api.Config) { c.DirectGrants = []token.Grant{"admin"} }},
		{"empty grant", func(c *api.Config) { c.DirectGrants = []token.Grant{""} }},
	}
	for _, tt := range tests {
		c := valid
		tt.change(&c)
		if _, err := api.New(c); err == nil {
			t.Errorf("%s: accepted", tt.name)
		}
	}

	c := valid
	c.DirectGrants, c.DirectTokenTTL = token.Grants(), 120*time.Second
	if _, err := api.New(c); err != nil {
		t.Errorf("every grant at the 120 s cap: %v", err)
	}
}
