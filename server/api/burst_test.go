package api_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/sectest"
)

// perSecond is an upstream that allows n mints per second of the harness clock and
// answers every further one 429 without Retry-After, as a rate window of a second does.
func perSecond(h *harness, n int) http.HandlerFunc {
	var mu sync.Mutex
	var second int64
	used := 0
	ok, refuse := h.fake.Default(sectest.RouteMint), failMint(http.StatusTooManyRequests, "")
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		if now := h.clk.Now().Unix(); now != second {
			second, used = now, 0
		}
		used++
		spend := used <= n
		mu.Unlock()
		if spend {
			ok.ServeHTTP(w, r)
			return
		}
		refuse(w, r)
	}
}

// post sends one mint outside h.do, from a goroutine that must not end the test: it
// returns the status and Retry-After, or 0 when no answer came.
func (h *harness) post(path, body string, sess *http.Cookie) (int, string) {
	hr, err := http.NewRequestWithContext(context.Background(), http.MethodPost,
		h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		return 0, ""
	}
	hr.Header.Set("X-CSRF", "1")
	hr.Header.Set("Content-Type", "application/json")
	hr.AddCookie(sess)
	res, err := h.rec.Client().Do(hr)
	if err != nil {
		return 0, ""
	}
	_ = res.Body.Close()
	return res.StatusCode, res.Header.Get("Retry-After")
}

// TestMintsInFlightPerUserAreCapped: a user has at most two mints waiting for upstream,
// on both token routes together; a third is answered 429 rate_limited with
// Retry-After: 1 and never reaches upstream, while other users' mints still do.
func TestMintsInFlightPerUserAreCapped(t *testing.T) {
	h := newHarness(t, withDirect)
	arrived, release := make(chan struct{}, 8), make(chan struct{})
	var releaseOnce sync.Once
	letGo := func() { releaseOnce.Do(func() { close(release) }) }
	t.Cleanup(letGo)
	ok := h.fake.Default(sectest.RouteMint)
	h.setMint(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		<-release
		ok.ServeHTTP(w, r)
	})
	alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")

	statuses := make(chan int, 3)
	for _, c := range []struct{ path, body string }{
		{"/api/token", `{"grant":"tts"}`},
		{"/api/token/direct", `{"grant":"tts"}`},
	} {
		go func() {
			status, _ := h.post(c.path, c.body, alice)
			statuses <- status
		}()
	}
	for range 2 {
		select {
		case <-arrived:
		case <-time.After(10 * time.Second):
			t.Fatal("alice's first two mints never reached upstream")
		}
	}

	for _, path := range []string{"/api/token", "/api/token/direct"} {
		r := h.do(req{path: path, body: `{"grant":"tts"}`, cookies: []*http.Cookie{alice}})
		if r.status != http.StatusTooManyRequests || r.code() != "rate_limited" ||
			r.header.Get("Retry-After") != "1" || strings.Contains(r.body, `"upstream"`) {
			t.Errorf("alice's third mint in flight on %s: %d %s Retry-After %q, want our "+
				"own 429 rate_limited with 1", path, r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if n := len(h.logs.Matching(t, "security_rejected",
		map[string]string{"reason": "mints_in_flight", "user": "alice"})); n != 2 {
		t.Errorf("%d mints_in_flight events for alice, want 2", n)
	}

	// bob's own places are free.
	go func() {
		status, _ := h.post("/api/token", `{"grant":"tts"}`, bob)
		statuses <- status
	}()
	select {
	case <-arrived:
	case <-time.After(10 * time.Second):
		t.Fatal("bob's mint never reached upstream")
	}
	letGo()
	for range 3 {
		if status := <-statuses; status != http.StatusOK {
			t.Errorf("a mint let through: %d, want 200", status)
		}
	}
	if n := h.mintsUpstream(); n != 3 {
		t.Errorf("upstream saw %d mints, want 3 (alice's two, bob's)", n)
	}
	// The places are given back with the answers.
	if r, c := h.mint(alice, `{"grant":"tts"}`); r.status != http.StatusOK || c == nil {
		t.Errorf("alice after her mints came back: %d %s", r.status, r.body)
	}
}

// TestOneAccountsBurstAndABystanderStopNobodyElse replays attack round 4: upstream
// allows 8 mints a second and answers 429 without Retry-After; one account spends the
// second on both token routes and a bystander's mint lands in the same second. Both get
// upstream's 429 with our Retry-After (the 5 s user cool-down), and only they wait:
// the global circuit stays closed and a third user mints the next second.
func TestOneAccountsBurstAndABystanderStopNobodyElse(t *testing.T) {
	h := newHarness(t, withDirect)
	h.setMint(perSecond(h, 8))
	alice, bob := h.login("alice", "alice-pw"), h.login("bob", "bob-pw")
	carol := h.login("carol", "carol-pw")

	for i := range 8 {
		path := []string{"/api/token", "/api/token/direct"}[i%2]
		r := h.do(req{path: path, body: `{"grant":"tts"}`, cookies: []*http.Cookie{alice}})
		if r.status != http.StatusOK {
			t.Fatalf("alice's mint %d within upstream's second: %d %s", i+1, r.status, r.body)
		}
	}
	for _, sess := range []*http.Cookie{alice, bob} {
		r, _ := h.mint(sess, `{"grant":"tts"}`)
		if r.status != http.StatusTooManyRequests || !strings.Contains(r.body, `"upstream"`) ||
			r.header.Get("Retry-After") != "5" {
			t.Fatalf("upstream's 429: %d %s Retry-After %q, want it with our 5", r.status,
				r.body, r.header.Get("Retry-After"))
		}
	}

	h.clk.Advance(time.Second)
	if r, c := h.mint(carol, `{"grant":"tts"}`); r.status != http.StatusOK || c == nil {
		t.Errorf("carol the next second: %d %s, want a token", r.status, r.body)
	}
	for _, sess := range []*http.Cookie{alice, bob} {
		r, _ := h.mint(sess, `{"grant":"tts"}`)
		if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "4" ||
			strings.Contains(r.body, `"upstream"`) {
			t.Errorf("a cooling user: %d %s Retry-After %q, want our own 429 with 4",
				r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if ev := h.quotaEvents("open"); len(ev) != 0 {
		t.Errorf("one account and a bystander opened the circuit: %v", ev)
	}
	if n := h.mintsUpstream(); n != 11 {
		t.Errorf("upstream saw %d mints, want 11", n)
	}

	h.clk.Advance(4 * time.Second)
	if r, c := h.mint(bob, `{"grant":"tts"}`); r.status != http.StatusOK || c == nil {
		t.Errorf("bob after his 5 s: %d %s", r.status, r.body)
	}
}
