package security_test

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// Items 13 and 22-30: minting, cookies and sessions.

func TestItem13_ForwardingHeadersBuyNoRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	spoof := func(i int) map[string]string {
		return map[string]string{
			"X-Forwarded-For": fmt.Sprintf("10.9.%d.1", i),
			"X-Real-Ip":       fmt.Sprintf("10.9.%d.2", i),
			"Forwarded":       fmt.Sprintf("for=10.9.%d.3", i),
		}
	}
	sess := e.login("alice", alicePassword)
	bob := e.login("bob", bobPassword)

	// Minting is limited per user (15 at once by default) whatever the client claims.
	granted := 0
	for i := range 20 {
		a := e.do(with(call{path: "/api/token", body: `{"grant":"tts"}`,
			cookies: []*http.Cookie{sess}}, spoof(i)))
		switch {
		case a.status == http.StatusOK:
			granted++
		case a.status != http.StatusTooManyRequests || a.code() != "rate_limited" ||
			a.header.Get("Retry-After") == "":
			t.Errorf("mint %d: %d %s Retry-After %q", i, a.status, a.body,
				a.header.Get("Retry-After"))
		}
	}
	if granted != api.DefaultMintLimit.Burst {
		t.Errorf("%d of 20 spoofed mints granted, want the burst of %d", granted,
			api.DefaultMintLimit.Burst)
	}
	if a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`,
		cookies: []*http.Cookie{bob}}); a.status != http.StatusOK {
		t.Errorf("bob limited by alice's bucket: %d", a.status)
	}
	if n := len(e.logs.Matching(t, "security_rejected",
		map[string]string{"reason": "mint_rate_limited", "user": "alice"})); n != 20-granted {
		t.Errorf("%d mint_rate_limited events, want %d", n, 20-granted)
	}

	// Sign-in attempts are limited per socket address (10 at once by default): the two
	// sign-ins above and eight guesses, then refusals, whatever the headers say.
	allowed := 2
	for i := range 12 {
		a := e.do(with(call{path: "/api/login",
			body: fmt.Sprintf(`{"username":"guess%d","password":"x"}`, i)}, spoof(i)))
		if a.status == http.StatusUnauthorized {
			allowed++
		} else if a.status != http.StatusTooManyRequests {
			t.Errorf("guess %d: %d %s", i, a.status, a.body)
		}
	}
	if allowed != api.DefaultLoginIPLimit.Burst {
		t.Errorf("%d sign-ins allowed from one address, want %d", allowed,
			api.DefaultLoginIPLimit.Burst)
	}

	for _, ev := range e.logs.Events(t, "login_failed") {
		if !strings.HasPrefix(ev.Str("remote"), "127.0.0.1:") {
			t.Errorf("login_failed names %q, not the socket peer", ev.Str("remote"))
		}
	}
	if strings.Contains(e.logs.String(), "10.9.") {
		t.Error("a spoofed address reached the log")
	}
	for _, r := range e.fake.Requests() {
		for name := range r.Header {
			if strings.Contains(strings.ToLower(name), "forward") ||
				strings.EqualFold(name, "X-Real-Ip") {
				t.Errorf("upstream received %s", name)
			}
		}
	}
}

func TestItem23_UpstreamMintFailures(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		upstream   http.Handler
		status     int
		code       string
		retryAfter string
	}{
		{"429", sectest.RateLimited("30"), 429, "rate_limited", "30"},
		{"429 with a bad Retry-After", sectest.RateLimited("soon\r\nX-Injected: 1"), 429,
			"rate_limited", "5"}, // ours: the user's cool-down without upstream's
		{"429 asking for a day", sectest.RateLimited("86400"), 429, "rate_limited", "300"},
		{"402", sectest.Status(http.StatusPaymentRequired), 502, "upstream_error", ""},
		{"500", sectest.Status(http.StatusInternalServerError), 502, "upstream_error", ""},
		{"401 echoing the key", sectest.EchoCredentials(), 502, "upstream_error", ""},
		{"307 elsewhere", nil, 502, "upstream_error", ""},
		{"stall", sectest.Stall(), 504, "upstream_timeout", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, func(_ *env, s *setup) {
				if tt.code == "upstream_timeout" {
					s.minter.Timeout = 500 * time.Millisecond // the stall's bound
				}
			})
			h := tt.upstream
			if h == nil {
				h = sectest.Redirect(http.StatusTemporaryRedirect, e.evil.URL()+"/access-token")
			}
			e.fake.Handle(sectest.RouteMint, h)
			sess := e.login("alice", alicePassword)

			a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`,
				cookies: []*http.Cookie{sess}})
			if a.status != tt.status || a.code() != tt.code ||
				a.header.Get("Retry-After") != tt.retryAfter {
				t.Errorf("got %d %s Retry-After %q, want %d %s %q", a.status, a.body,
					a.header.Get("Retry-After"), tt.status, tt.code, tt.retryAfter)
			}
			if len(a.header.Values("Set-Cookie")) != 0 {
				t.Error("a failed mint set a cookie")
			}
			if n := len(e.logs.Events(t, "token_mint_failed")); n != 1 {
				t.Errorf("%d token_mint_failed events, want 1", n)
			}
			if n := len(e.fake.RequestsTo(sectest.RouteMint)); n != 1 {
				t.Errorf("upstream saw %d mints, want 1 (no retry)", n)
			}
		})
	}
}

// TestItem23_UpstreamQuotaOpensACircuit: a 429 for one user cools down that user alone,
// on both token routes, for upstream's Retry-After, without reaching upstream; everyone
// else keeps minting, and a second user's 429 (a bystander of a burst) changes nothing
// for the rest. Once 429s reach three users within ten seconds the account is limited
// as a whole: further mints on both routes, for every user, wait out a cool-down
// (upstream's Retry-After) without reaching upstream; then one mint probes, and its
// success closes the circuit. Opening and closing are one upstream_quota event each; a
// user's cool-down is one user_cool_down event.
func TestItem23_UpstreamQuotaOpensACircuit(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPI(func(c *api.Config) { c.DirectGrants = []token.Grant{token.TTS} }))
	e.fake.Handle(sectest.RouteMint, sectest.RateLimited("60"))
	alice := []*http.Cookie{e.login("alice", alicePassword)}
	bob := []*http.Cookie{e.login("bob", bobPassword)}
	carol := []*http.Cookie{e.login("carol", carolPassword)}

	if a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`, cookies: alice}); a.status !=
		http.StatusTooManyRequests || a.header.Get("Retry-After") != "60" {
		t.Fatalf("the refused mint: %d %s Retry-After %q", a.status, a.body,
			a.header.Get("Retry-After"))
	}
	refusedLocally := func(c call, retryAfter string) {
		t.Helper()
		a := e.do(c)
		if a.status != http.StatusTooManyRequests || a.code() != "rate_limited" ||
			a.header.Get("Retry-After") != retryAfter || strings.Contains(a.body, `"upstream"`) {
			t.Errorf("%s %s: %d %s Retry-After %q, want our own 429 rate_limited %s",
				c.path, c.body, a.status, a.body, a.header.Get("Retry-After"), retryAfter)
		}
		if len(a.header.Values("Set-Cookie")) != 0 || strings.Contains(a.body, `"token"`) {
			t.Errorf("%s: a refused mint handed out a token", c.path)
		}
	}
	upstreamRefused := func(who string, cookies []*http.Cookie) {
		t.Helper()
		if a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`, cookies: cookies}); a.status !=
			http.StatusTooManyRequests || !strings.Contains(a.body, `"upstream"`) {
			t.Fatalf("%s's mint: %d %s, want upstream's 429", who, a.status, a.body)
		}
	}

	// One user's 429: alice waits, on both routes; the circuit stays closed.
	e.clk.Advance(5 * time.Second)
	refusedLocally(call{path: "/api/token", body: `{"grant":"stt"}`, cookies: alice}, "55")
	refusedLocally(call{path: "/api/token/direct", body: `{"grant":"tts"}`, cookies: alice}, "55")
	if n := len(e.fake.RequestsTo(sectest.RouteMint)); n != 1 {
		t.Errorf("upstream saw %d mints within alice's cool-down, want 1", n)
	}
	if n := len(e.logs.Matching(t, "user_cool_down", map[string]string{"user": "alice"})); n != 1 {
		t.Errorf("%d user_cool_down events for alice, want 1", n)
	}

	// bob still reaches upstream; his 429 makes two users, still not the account.
	upstreamRefused("bob", bob)
	if n := len(e.logs.Matching(t, "upstream_quota", nil)); n != 0 {
		t.Errorf("two users' 429s logged %d upstream_quota events", n)
	}
	// carol's makes three within ten seconds: the account is limited.
	e.clk.Advance(time.Second)
	upstreamRefused("carol", carol)
	e.clk.Advance(20 * time.Second)
	for _, c := range []call{
		{path: "/api/token", body: `{"grant":"tts"}`, cookies: alice},
		{path: "/api/token", body: `{"grant":"tts"}`, cookies: bob},
		{path: "/api/token/direct", body: `{"grant":"tts"}`, cookies: bob},
		{path: "/api/token", body: `{"grant":"tts"}`, cookies: carol},
	} {
		refusedLocally(c, "40")
	}
	if n := len(e.fake.RequestsTo(sectest.RouteMint)); n != 3 {
		t.Errorf("upstream saw %d mints within its Retry-After, want 3", n)
	}
	opened := e.logs.Matching(t, "upstream_quota", map[string]string{"state": "open"})
	if len(opened) != 1 || opened[0].Str("level") != "WARN" {
		t.Errorf("upstream_quota open events %v, want one warning", opened)
	}

	// The cool-down over, one mint probes upstream, which has recovered.
	e.fake.Handle(sectest.RouteMint, e.fake.Default(sectest.RouteMint))
	e.clk.Advance(40 * time.Second)
	e.mint(bob[0], token.TTS)
	e.mint(alice[0], token.STT)
	if n := len(e.fake.RequestsTo(sectest.RouteMint)); n != 5 {
		t.Errorf("upstream saw %d mints, want 5 (three refused, the probe, one more)", n)
	}
	if n := len(e.logs.Matching(t, "upstream_quota", map[string]string{"state": "closed"})); n != 1 {
		t.Errorf("%d upstream_quota closed events, want 1", n)
	}
}

// TestItem23_OneAccountsBurstStopsNobodyElse is attack round 4 end to end: upstream
// allows 8 mints a second and answers 429 without Retry-After. One account fires 25
// mints at once on both routes over three sessions, and a bystander's mint lands in the
// second it spent. At most two of the account's mints are in flight at once (the rest are our
// 429 with Retry-After: 1), every 429 carries a Retry-After of ours, and the global
// circuit stays closed: a third user mints the next second.
func TestItem23_OneAccountsBurstStopsNobodyElse(t *testing.T) {
	t.Parallel()
	e := newEnv(t, withAPI(func(c *api.Config) { c.DirectGrants = []token.Grant{token.TTS} }))
	var mu sync.Mutex
	var second int64
	used := 0
	ok := e.fake.Default(sectest.RouteMint)
	limited := sectest.RateLimited("")
	e.fake.Handle(sectest.RouteMint, http.HandlerFunc(func(w http.ResponseWriter,
		r *http.Request) {
		mu.Lock()
		if now := e.clk.Now().Unix(); now != second {
			second, used = now, 0
		}
		used++
		spend := used <= 8
		mu.Unlock()
		if spend {
			ok.ServeHTTP(w, r)
			return
		}
		limited.ServeHTTP(w, r)
	}))
	var attacker []*http.Cookie
	for range 3 {
		attacker = append(attacker, e.login("alice", alicePassword))
	}
	bob := []*http.Cookie{e.login("bob", bobPassword)}
	carol := []*http.Cookie{e.login("carol", carolPassword)}

	var wg sync.WaitGroup
	answers := make(chan answer, 25)
	for i := range 25 {
		c := call{path: "/api/token", body: `{"grant":"tts"}`,
			cookies: []*http.Cookie{attacker[i%3]}}
		if i >= 15 {
			c.path = "/api/token/direct"
		}
		wg.Add(1)
		go func() { defer wg.Done(); answers <- e.do(c) }()
	}
	wg.Wait()
	close(answers)
	for a := range answers {
		if a.status == http.StatusTooManyRequests && a.header.Get("Retry-After") == "" {
			t.Errorf("a 429 without our Retry-After: %s", a.body)
		}
		if a.status != http.StatusOK && a.status != http.StatusTooManyRequests {
			t.Errorf("a mint answered %d %s", a.status, a.body)
		}
	}
	if n := len(e.logs.Matching(t, "security_rejected",
		map[string]string{"reason": "mints_in_flight"})); n == 0 {
		t.Error("25 mints at once never met the cap on mints in flight")
	}
	// Whatever of the second the burst left, alice spends it, and bob's mint lands in it.
	for i := 0; ; i++ {
		a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`, cookies: attacker[:1]})
		if a.status == http.StatusTooManyRequests {
			break
		}
		if i == 8 {
			t.Fatalf("alice still minting after 8 more: %d %s", a.status, a.body)
		}
	}
	if a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`, cookies: bob}); a.status !=
		http.StatusTooManyRequests || !strings.Contains(a.body, `"upstream"`) ||
		a.header.Get("Retry-After") != "5" {
		t.Fatalf("the bystander's mint: %d %s Retry-After %q, want upstream's 429 with our 5",
			a.status, a.body, a.header.Get("Retry-After"))
	}
	if n := len(e.logs.Matching(t, "upstream_quota", map[string]string{"state": "open"})); n != 0 {
		t.Fatalf("one account and a bystander opened the circuit (%d events)", n)
	}

	e.clk.Advance(time.Second)
	e.mint(carol[0], token.TTS) // fails the test unless it gets a token
}

func TestItem24_MintingNeedsALiveSessionTheServerIssued(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	old := e.login("alice", alicePassword)
	fresh := e.loginWith(old) // rotates: old is dead from here on
	if a := e.do(call{path: "/api/token", body: `{"grant":"tts"}`,
		cookies: []*http.Cookie{fresh}}); a.status != http.StatusOK {
		t.Errorf("the rotated session: %d %s", a.status, a.body)
	}
	expiring := e.login("bob", bobPassword)
	e.clk.Advance(session.DefaultIdle + time.Minute)
	forged := session.NewID()

	upstream := len(e.fake.Requests())
	for _, tc := range []struct {
		name string
		sess *http.Cookie
	}{
		{"no cookie", nil},
		{"forged id", &http.Cookie{Name: session.CookieName, Value: forged}},
		{"empty id", &http.Cookie{Name: session.CookieName, Value: ""}},
		{"id replaced at sign-in", old},
		{"idle session", expiring},
		{"a token cookie as the session", &http.Cookie{Name: session.CookieName,
			Value: sectest.TokenPrefix + "1"}},
	} {
		var cookies []*http.Cookie
		if tc.sess != nil {
			cookies = append(cookies, tc.sess)
		}
		for _, c := range []call{
			{path: "/api/token", body: `{"grant":"tts"}`, cookies: cookies},
			proxyCall(routeAt(t, "/tts/bytes"), cookies),
		} {
			if a := e.do(c); a.status != http.StatusUnauthorized || a.code() != "no_session" {
				t.Errorf("%s on %s: %d %s, want 401 no_session", tc.name, c.path, a.status,
					a.body)
			}
		}
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
	if strings.Contains(e.logs.String(), forged) {
		t.Error("the presented session id reached the log")
	}

	// A planted id is never adopted: signing in with it yields another.
	planted := &http.Cookie{Name: session.CookieName, Value: forged}
	if got := e.loginWith(planted); got.Value == forged {
		t.Error("sign-in adopted a client-chosen session id")
	}
}

// loginWith signs alice in while presenting sess, as a browser with an old cookie does.
func (e *env) loginWith(sess *http.Cookie) *http.Cookie {
	e.t.Helper()
	a := e.do(call{path: "/api/login", cookies: []*http.Cookie{sess},
		body: `{"username":"alice","password":"` + alicePassword + `"}`})
	c := setCookie(e.t, a, session.CookieName)
	if a.status != http.StatusOK || c == nil {
		e.t.Fatalf("login: %d %s", a.status, a.body)
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}
}

func TestItem25_CookiesFitTheBrowserWithRealisticTokens(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	// Cartesia's tokens are HS256 JWTs of a few hundred bytes; 900 leaves room.
	e.fake.SetTokenLength(900)
	sess := e.login("alice", alicePassword)
	cookies := []*http.Cookie{sess}

	for _, g := range token.Grants() {
		a := e.do(call{path: "/api/token", body: fmt.Sprintf(`{"grant":%q}`, g),
			cookies: []*http.Cookie{sess}})
		c := setCookie(t, a, seal.CookieName(g))
		if a.status != http.StatusOK || c == nil {
			t.Fatalf("mint %s: %d %s", g, a.status, a.body)
		}
		if a.header.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: Cache-Control %q", g, a.header.Get("Cache-Control"))
		}
		if !strings.HasPrefix(c.Name, "__Host-Http-") || !c.Secure || !c.HttpOnly ||
			c.SameSite != http.SameSiteStrictMode || c.Path != "/" || c.Domain != "" {
			t.Errorf("%s: attributes %+v", g, c)
		}
		if c.MaxAge < 1 || c.MaxAge > 300 {
			t.Errorf("%s: Max-Age %d, want at most the 300 s lifetime", g, c.MaxAge)
		}
		if n := len(c.Name) + len(c.Value); n > 4096 {
			t.Errorf("%s: name and value are %d bytes, over 4096", g, n)
		}
		cookies = append(cookies, &http.Cookie{Name: c.Name, Value: c.Value})
	}

	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if n := len("Cookie: " + strings.Join(parts, "; ")); n > 8<<10 {
		t.Errorf("the Cookie header with every grant is %d bytes, over 8 KiB", n)
	}
	a := e.do(proxyCall(routeAt(t, "/tts/bytes"), cookies))
	if a.status != http.StatusOK {
		t.Errorf("a call carrying every cookie: %d %s", a.status, a.body)
	}
}

func TestItem26_TokenCookiesAreSealedAndBound(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	alice := e.signedIn()
	sess, tts, stt := alice[0], alice[1], alice[2]
	bob := e.login("bob", bobPassword)
	upstream := len(e.fake.Requests())

	// The sealed value is not a token, and upstream does not take it as one.
	status, _ := bearerAtFake(t, e, tts.Value)
	if status != http.StatusUnauthorized {
		t.Errorf("the cookie value as a Bearer token upstream: %d, want 401", status)
	}

	flipped := []byte(tts.Value)
	flipped[len(flipped)/2] ^= 1
	bad := string(flipped)
	tests := []struct {
		name    string
		cookies []*http.Cookie
	}{
		{"one byte flipped", []*http.Cookie{sess, {Name: tts.Name, Value: bad}}},
		{"another user's session", []*http.Cookie{bob, tts}},
		{"another grant's cookie", []*http.Cookie{sess, {Name: tts.Name, Value: stt.Value}}},
		{"a raw token", []*http.Cookie{sess, {Name: tts.Name, Value: e.fake.Tokens()[0]}}},
	}
	for _, tt := range tests {
		a := e.do(proxyCall(routeAt(t, "/tts/bytes"), tt.cookies))
		if a.status != http.StatusUnauthorized || a.code() != "no_token" {
			t.Errorf("%s: %d %s, want 401 no_token", tt.name, a.status, a.body)
		}
	}
	if n := len(e.logs.Matching(t, "security_rejected",
		map[string]string{"reason": "token_cookie_invalid"})); n != len(tests) {
		t.Errorf("%d token_cookie_invalid events, want %d", n, len(tests))
	}
	if strings.Contains(e.logs.String(), bad) {
		t.Error("a presented cookie value reached the log")
	}
	if n := len(e.fake.Requests()) - upstream - 1; n != 0 { // less the direct probe
		t.Errorf("upstream saw %d proxied calls with bad cookies", n)
	}
}

// bearerAtFake calls the fake directly with value as a Bearer token.
func bearerAtFake(t *testing.T, e *env, value string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.fake.URL()+"/tts/bytes",
		strings.NewReader(`{}`))
	req.Header.Set("Authorization", "Bearer "+value)
	req.Header.Set("Cartesia-Version", cartesiaVersion)
	resp, err := e.fake.Trust(&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	return resp.StatusCode, resp.Status
}

// TestItem30_ExpiredSessionsEndTheirWebSockets: a session that times out server-side
// takes its open streams with it, as signing out does: 1008 "session ended", whether it
// reached its absolute deadline or idled out. The proxy looks sessions up again
// periodically (every 30 s by default); the suite has it look often, so that the fake
// clock's jump is noticed at once. An expiring token alone cuts nothing (see
// docs/security-checklist.md, item 30).
func TestItem30_ExpiredSessionsEndTheirWebSockets(t *testing.T) {
	t.Parallel()
	const path = "/cartesia/tts/websocket"
	for _, tc := range []struct {
		name string
		jump time.Duration
	}{
		{"absolute", session.DefaultAbsolute + time.Minute},
		{"idle", session.DefaultIdle + time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, withAPI(func(c *api.Config) {
				c.WebSocketSessionCheck = 10 * time.Millisecond
			}))
			cookies := e.signedIn()
			c, _, err := e.dialWS(path, nil, cookies...)
			if err != nil {
				t.Fatal(err)
			}
			e.roundTrip(c, path, []byte("before"))

			e.clk.Advance(tc.jump)
			got := e.closeOf(c, path, 5*time.Second)
			if got.Code != websocket.StatusPolicyViolation || got.Reason != "session ended" {
				t.Errorf("socket of an expired session: %v, want 1008 session ended", got)
			}
			waitFor(t, "the relay's log event", func() bool {
				return len(e.logs.Matching(t, "proxy",
					map[string]string{"route": path, "note": "session_expired"})) == 1
			})
			// The session itself is gone too: the next call must sign in again.
			if a := e.do(proxyCall(routeAt(t, "/tts/bytes"), cookies)); a.status !=
				http.StatusUnauthorized || a.code() != "no_session" {
				t.Errorf("a call after the timeout: %d %s, want 401 no_session", a.status,
					a.body)
			}
		})
	}
}
