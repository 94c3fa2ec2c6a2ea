package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/token"
)

// setMint replaces the fake's POST /access-token handler, safely while requests run;
// nil puts the fake's own back.
func (h *harness) setMint(f http.HandlerFunc) {
	if f == nil {
		h.fake.Handle(sectest.RouteMint, h.fake.Default(sectest.RouteMint))
		return
	}
	h.fake.Handle(sectest.RouteMint, f)
}

// failMint answers every mint with status, a Cartesia-shaped body and, when not empty,
// Retry-After.
func failMint(status int, retryAfter string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		if retryAfter != "" {
			w.Header().Set("Retry-After", retryAfter)
		}
		w.WriteHeader(status)
		_, _ = fmt.Fprintf(w, `{"error_code":"quota","title":"No","message":"%d",`+
			`"request_id":"req_q"}`, status)
	}
}

// quotaEvents returns the upstream_quota events in the given state.
func (h *harness) quotaEvents(state string) []sectest.Event {
	var out []sectest.Event
	for _, ev := range h.logs.Events(h.t, "upstream_quota") {
		if ev["state"] == state {
			out = append(out, ev)
		}
	}
	return out
}

func withDirect(c *api.Config) { c.DirectGrants = []token.Grant{token.TTS} }

func TestUpstreamOutOfCreditsStopsMintsOnBothRoutes(t *testing.T) {
	h := newHarness(t, withDirect)
	h.setMint(failMint(http.StatusPaymentRequired, ""))
	alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")

	// The answer that opens the circuit is upstream's own, as before.
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 502 || r.code() != "upstream_error" {
		t.Fatalf("the 402 itself: %d %s, want 502 upstream_error", r.status, r.body)
	}
	opened := h.quotaEvents("open")
	if len(opened) != 1 || opened[0]["level"] != "WARN" ||
		opened[0]["upstream_status"] != float64(402) || opened[0]["cool_down_s"] != float64(10) ||
		opened[0]["request_id"] != "req_q" {
		t.Fatalf("upstream_quota open events %v, want one warning naming 402 and 10 s "+
			"(DefaultQuotaCoolDown)", opened)
	}

	h.clk.Advance(4 * time.Second)
	for _, c := range []req{
		{path: "/api/token", body: `{"grant":"stt"}`, cookies: []*http.Cookie{alice}},
		{path: "/api/token", body: `{"grant":"tts"}`, cookies: []*http.Cookie{bob}},
		{path: "/api/token/direct", body: `{"grant":"tts"}`, cookies: []*http.Cookie{bob}},
	} {
		r := h.do(c)
		if r.status != 503 || r.code() != "upstream_unavailable" ||
			r.header.Get("Retry-After") != "6" {
			t.Errorf("%s %s: %d %s Retry-After %q, want 503 upstream_unavailable 6", c.path,
				c.body, r.status, r.body, r.header.Get("Retry-After"))
		}
		if len(r.header.Values("Set-Cookie")) != 0 || strings.Contains(r.body, `"token"`) {
			t.Errorf("%s: a refused mint handed out a token", c.path)
		}
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 1 {
		t.Errorf("upstream saw %d mints, want 1", n)
	}
	if n := len(h.logs.Events(t, "token_mint_failed")); n != 4 {
		t.Errorf("%d token_mint_failed events, want one per failed mint (4)", n)
	}

	// The cool-down over, one mint probes; still out of credits, the circuit reopens.
	h.clk.Advance(6 * time.Second)
	if r, _ := h.mint(bob, `{"grant":"tts"}`); r.status != 502 || r.code() != "upstream_error" {
		t.Errorf("the failing probe: %d %s, want upstream's 502", r.status, r.body)
	}
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 503 ||
		r.header.Get("Retry-After") != "10" {
		t.Errorf("after the failing probe: %d Retry-After %q, want 503 and 10", r.status,
			r.header.Get("Retry-After"))
	}
	if n := len(h.quotaEvents("open")); n != 2 {
		t.Errorf("%d open events, want 2", n)
	}

	// Credits back: the next probe closes the circuit, and mints flow again.
	h.setMint(nil)
	h.clk.Advance(10 * time.Second)
	for _, sess := range []*http.Cookie{alice, bob} {
		if r, c := h.mint(sess, `{"grant":"tts"}`); r.status != 200 || c == nil {
			t.Errorf("after recovery: %d %s", r.status, r.body)
		}
	}
	closed := h.quotaEvents("closed")
	if len(closed) != 1 || closed[0]["open_s"] != float64(20) {
		t.Errorf("upstream_quota closed events %v, want one after 20 s", closed)
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 4 {
		t.Errorf("upstream saw %d mints, want 4", n)
	}
}

func TestUpstreamRateLimitIsAnsweredLocallyUntilItsRetryAfter(t *testing.T) {
	h := newHarness(t, withDirect)
	h.setMint(failMint(http.StatusTooManyRequests, "12"))
	alice := h.login("alice", "alice-pw")

	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 429 ||
		r.header.Get("Retry-After") != "12" || !strings.Contains(r.body, `"upstream"`) {
		t.Fatalf("the 429 itself: %d %s Retry-After %q", r.status, r.body,
			r.header.Get("Retry-After"))
	}
	h.clk.Advance(11*time.Second + 100*time.Millisecond)
	for _, path := range []string{"/api/token", "/api/token/direct"} {
		r := h.do(req{path: path, body: `{"grant":"tts"}`, cookies: []*http.Cookie{alice}})
		if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "1" ||
			strings.Contains(r.body, `"upstream"`) {
			t.Errorf("%s: %d %s Retry-After %q, want our own 429 rate_limited with 1",
				path, r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 1 {
		t.Errorf("upstream saw %d mints, want 1", n)
	}
}

func TestServerErrorsInARowOpenTheCircuit(t *testing.T) {
	h := newHarness(t)
	h.setMint(failMint(http.StatusInternalServerError, ""))
	alice := h.login("alice", "alice-pw")

	for i := range 3 {
		if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 502 {
			t.Fatalf("5xx %d: %d %s, want upstream's 502", i+1, r.status, r.body)
		}
	}
	r, _ := h.mint(alice, `{"grant":"tts"}`)
	if r.status != 503 || r.code() != "upstream_unavailable" ||
		r.header.Get("Retry-After") != "10" {
		t.Errorf("after three 5xx: %d %s Retry-After %q, want 503 upstream_unavailable 10",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 3 {
		t.Errorf("upstream saw %d mints, want 3", n)
	}
}

func TestHalfOpenCircuitSendsOneProbe(t *testing.T) {
	h := newHarness(t)
	h.setMint(failMint(http.StatusTooManyRequests, "5"))
	alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")
	// Three users refused within the window open the circuit for everyone (one user's
	// 429 only cools that user down).
	h.mint(alice, `{"grant":"tts"}`)
	h.mint(bob, `{"grant":"tts"}`)
	h.mint(h.login("carol", "carol-pw"), `{"grant":"tts"}`)
	h.clk.Advance(5 * time.Second)

	// A second mint reaching upstream must not panic or hang the test: it fails it.
	arrived, release := make(chan struct{}), make(chan struct{})
	var arrivedOnce, releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	h.setMint(func(w http.ResponseWriter, _ *http.Request) {
		arrivedOnce.Do(func() { close(arrived) })
		<-release
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"token": sectest.TokenPrefix + "probe"})
	})

	// The probe, sent outside h.do: a goroutine may not end the test.
	probe := make(chan int, 1)
	go func() {
		hr, _ := http.NewRequestWithContext(context.Background(), http.MethodPost,
			h.srv.URL+"/api/token", strings.NewReader(`{"grant":"tts"}`))
		hr.Header.Set("X-CSRF", "1")
		hr.Header.Set("Content-Type", "application/json")
		hr.AddCookie(alice)
		res, err := h.rec.Client().Do(hr)
		if err != nil {
			probe <- 0
			return
		}
		_ = res.Body.Close()
		probe <- res.StatusCode
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("the probe never reached upstream")
	}

	r, _ := h.mint(bob, `{"grant":"tts"}`)
	if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "1" {
		t.Errorf("while the probe is in flight: %d %s Retry-After %q, want 429 with 1",
			r.status, r.body, r.header.Get("Retry-After"))
	}
	letGo()
	if status := <-probe; status != 200 {
		t.Errorf("the probe: %d, want 200", status)
	}
	h.setMint(nil)
	if r, c := h.mint(bob, `{"grant":"tts"}`); r.status != 200 || c == nil {
		t.Errorf("after a successful probe: %d %s", r.status, r.body)
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 5 {
		t.Errorf("upstream saw %d mints, want 5 (three 429s, the probe, one more)", n)
	}
}
