package api_test

import (
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/sectest"
)

// mintBudget lets n mints through to the fake's own handler, then answers each further
// mint 429 with Retry-After: retryAfter, as an upstream whose rate window is spent.
func mintBudget(h *harness, n int, retryAfter string) http.HandlerFunc {
	var mu sync.Mutex
	ok, refuse := h.fake.Default(sectest.RouteMint), failMint(http.StatusTooManyRequests,
		retryAfter)
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		spend := n > 0
		n--
		mu.Unlock()
		if spend {
			ok.ServeHTTP(w, r)
			return
		}
		refuse(w, r)
	}
}

// mintsUpstream is how many mints reached the fake so far.
func (h *harness) mintsUpstream() int { return len(h.fake.RequestsTo(sectest.RouteMint)) }

// TestOneUsersBurstCoolsDownOnlyThatUser is the attack of one account that bursts mints
// until upstream answers 429: that account, on both token routes, waits out upstream's
// Retry-After without reaching upstream; everyone else keeps minting, and no
// upstream_quota circuit opens.
func TestOneUsersBurstCoolsDownOnlyThatUser(t *testing.T) {
	h := newHarness(t, withDirect)
	h.setMint(mintBudget(h, 5, "20"))
	alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")

	for i := range 5 {
		if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 200 {
			t.Fatalf("mint %d within upstream's budget: %d %s", i+1, r.status, r.body)
		}
	}
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 429 ||
		r.header.Get("Retry-After") != "20" || !strings.Contains(r.body, `"upstream"`) {
		t.Fatalf("the mint upstream refused: %d %s Retry-After %q, want upstream's 429",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	cooled := h.logs.Events(t, "user_cool_down")
	if len(cooled) != 1 || cooled[0]["user"] != "alice" || cooled[0]["cool_down_s"] !=
		float64(20) || cooled[0]["level"] != "WARN" {
		t.Fatalf("user_cool_down events %v, want one warning for alice, 20 s", cooled)
	}

	h.clk.Advance(5 * time.Second)
	for _, c := range []req{
		{path: "/api/token", body: `{"grant":"stt"}`, cookies: []*http.Cookie{alice}},
		{path: "/api/token/direct", body: `{"grant":"tts"}`, cookies: []*http.Cookie{alice}},
	} {
		r := h.do(c)
		if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "15" ||
			strings.Contains(r.body, `"upstream"`) || len(r.header.Values("Set-Cookie")) != 0 {
			t.Errorf("alice on %s while cooling down: %d %s Retry-After %q, want our own "+
				"429 rate_limited with 15", c.path, r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if n := h.mintsUpstream(); n != 6 {
		t.Errorf("upstream saw %d mints, want 6 (none while alice cools down)", n)
	}

	// Upstream's window refills; bob was never held back.
	h.setMint(nil)
	for _, c := range []req{
		{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{bob}},
		{path: "/api/token/direct", body: `{"grant":"tts"}`, cookies: []*http.Cookie{bob}},
	} {
		if r := h.do(c); r.status != 200 {
			t.Errorf("bob on %s: %d %s, want 200", c.path, r.status, r.body)
		}
	}
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 429 {
		t.Errorf("alice after bob's mints: %d, still cooling down", r.status)
	}
	if ev := h.logs.Events(t, "upstream_quota"); len(ev) != 0 {
		t.Errorf("one user's burst opened the global circuit: %v", ev)
	}

	h.clk.Advance(15 * time.Second)
	if r, c := h.mint(alice, `{"grant":"tts"}`); r.status != 200 || c == nil {
		t.Errorf("alice after her cool-down: %d %s", r.status, r.body)
	}
}

// TestRateLimitsFromThreeUsersOpenTheCircuit: 429s for three different users within ten
// seconds say the account as a whole is limited, so the global circuit opens for
// everyone; one user's 429 with a bystander's, or 429s further apart, each cool down
// only their own user.
func TestRateLimitsFromThreeUsersOpenTheCircuit(t *testing.T) {
	t.Run("within ten seconds", func(t *testing.T) {
		h := newHarness(t, withDirect)
		h.setMint(failMint(http.StatusTooManyRequests, "40"))
		alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")
		carol := h.login("carol", "carol-pw")

		h.mint(alice, `{"grant":"tts"}`)
		h.clk.Advance(5 * time.Second)
		h.mint(bob, `{"grant":"tts"}`)
		if ev := h.quotaEvents("open"); len(ev) != 0 {
			t.Fatalf("opened on two users' 429s: %v", ev)
		}
		h.clk.Advance(4 * time.Second)
		if r, _ := h.mint(carol, `{"grant":"tts"}`); r.status != 429 ||
			!strings.Contains(r.body, `"upstream"`) {
			t.Fatalf("carol's mint: %d %s, want upstream's 429", r.status, r.body)
		}
		opened := h.quotaEvents("open")
		if len(opened) != 1 || opened[0]["level"] != "WARN" ||
			opened[0]["upstream_status"] != float64(429) || opened[0]["cool_down_s"] != float64(40) {
			t.Fatalf("upstream_quota open events %v, want one for 429, 40 s", opened)
		}

		// t=41 s: alice's and bob's own cool-downs are over; the circuit's is not.
		h.clk.Advance(32 * time.Second)
		r, _ := h.mint(alice, `{"grant":"tts"}`)
		if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "8" {
			t.Errorf("alice with the circuit open: %d %s Retry-After %q, want 429 with 8",
				r.status, r.body, r.header.Get("Retry-After"))
		}
		if n := h.mintsUpstream(); n != 3 {
			t.Errorf("upstream saw %d mints, want 3", n)
		}

		// The probe after the cool-down closes the circuit for everyone.
		h.setMint(nil)
		h.clk.Advance(8 * time.Second)
		for _, sess := range []*http.Cookie{bob, alice, carol} {
			if r, c := h.mint(sess, `{"grant":"tts"}`); r.status != 200 || c == nil {
				t.Errorf("after the probe: %d %s", r.status, r.body)
			}
		}
		if n := len(h.quotaEvents("closed")); n != 1 {
			t.Errorf("%d closed events, want 1", n)
		}
	})

	t.Run("one user and a bystander", func(t *testing.T) {
		h := newHarness(t)
		h.setMint(failMint(http.StatusTooManyRequests, ""))
		alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")
		carol := h.login("carol", "carol-pw")
		for range 3 { // the burst, its bystander, each cool-down over, again
			for _, sess := range []*http.Cookie{alice, bob} {
				if r, _ := h.mint(sess, `{"grant":"tts"}`); r.status != 429 ||
					r.header.Get("Retry-After") != "5" {
					t.Fatalf("upstream's 429 without Retry-After: %d %s Retry-After %q, "+
						"want our 5", r.status, r.body, r.header.Get("Retry-After"))
				}
			}
			h.clk.Advance(5 * time.Second)
		}
		if ev := h.quotaEvents("open"); len(ev) != 0 {
			t.Errorf("one user and a bystander opened the circuit: %v", ev)
		}
		h.setMint(nil)
		if r, c := h.mint(carol, `{"grant":"tts"}`); r.status != 200 || c == nil {
			t.Errorf("carol after one user's bursts: %d %s", r.status, r.body)
		}
	})

	t.Run("further apart", func(t *testing.T) {
		h := newHarness(t)
		h.setMint(failMint(http.StatusTooManyRequests, "10"))
		alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")

		carol := h.login("carol", "carol-pw")

		h.mint(alice, `{"grant":"tts"}`)
		h.clk.Advance(6 * time.Second)
		h.mint(carol, `{"grant":"tts"}`)
		h.clk.Advance(5 * time.Second)
		h.mint(bob, `{"grant":"tts"}`)
		if ev := h.quotaEvents("open"); len(ev) != 0 {
			t.Errorf("opened on three 429s eleven seconds apart: %v", ev)
		}
		if n := len(h.logs.Events(t, "user_cool_down")); n != 3 {
			t.Errorf("%d user_cool_down events, want 3", n)
		}
		h.setMint(nil)
		if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 200 {
			t.Errorf("alice, her cool-down over: %d %s", r.status, r.body)
		}
		if r, _ := h.mint(bob, `{"grant":"tts"}`); r.status != 429 {
			t.Errorf("bob, cooling down: %d %s", r.status, r.body)
		}
	})
}

// TestMintRateTotalBoundsAllUsersTogether: past MintLimitTotal the server answers 429
// rate_limited itself, for any user, rather than burst past what upstream allows.
func TestMintRateTotalBoundsAllUsersTogether(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.MintLimitTotal = api.RateLimit{Every: 10 * time.Second, Burst: 3}
	})
	alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")
	for _, sess := range []*http.Cookie{alice, alice, bob} {
		if r, _ := h.mint(sess, `{"grant":"tts"}`); r.status != 200 {
			t.Fatalf("a mint within the total: %d %s", r.status, r.body)
		}
	}
	for _, sess := range []*http.Cookie{bob, alice} {
		r, c := h.mint(sess, `{"grant":"tts"}`)
		if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "10" ||
			c != nil {
			t.Errorf("a mint over the total: %d %s Retry-After %q, want 429 rate_limited 10",
				r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if n := h.mintsUpstream(); n != 3 {
		t.Errorf("upstream saw %d mints, want 3", n)
	}
	if n := len(h.logs.Matching(t, "token_mint_failed",
		map[string]string{"reason": "mint_rate_total"})); n != 2 {
		t.Errorf("%d token_mint_failed mint_rate_total events, want 2", n)
	}
	h.clk.Advance(10 * time.Second)
	if r, _ := h.mint(bob, `{"grant":"tts"}`); r.status != 200 {
		t.Errorf("after the bucket refilled: %d %s", r.status, r.body)
	}
}

// TestMintRetryAfterIsCapped: upstream's Retry-After on a refused mint reaches the page
// as at most 300 s, and the user's cool-down is no longer.
func TestMintRetryAfterIsCapped(t *testing.T) {
	h := newHarness(t)
	h.setMint(failMint(http.StatusTooManyRequests, "86400"))
	alice := h.login("alice", "alice-pw")
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 429 ||
		r.header.Get("Retry-After") != "300" {
		t.Errorf("upstream's 429: %d Retry-After %q, want 300", r.status,
			r.header.Get("Retry-After"))
	}
	h.clk.Advance(time.Second)
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 429 ||
		r.header.Get("Retry-After") != "299" {
		t.Errorf("cooling down: %d Retry-After %q, want 299", r.status,
			r.header.Get("Retry-After"))
	}
}
