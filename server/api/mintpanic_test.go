package api_test

import (
	"context"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/token"
)

// panickyMinter is another Minter that panics instead of minting while armed, as a bug
// in a Minter would.
type panickyMinter struct {
	api.Minter
	armed atomic.Bool
}

func (m *panickyMinter) Mint(ctx context.Context, g token.Grant,
	ttl time.Duration) (token.Token, error) {
	if m.armed.Load() {
		panic("minter bug")
	}
	return m.Minter.Mint(ctx, g, ttl)
}

// postUnrecorded sends a same-origin JSON POST that may get no answer at all (the handler
// panicked), so it does not go through h.do, which fails the test on a transport error.
func (h *harness) postUnrecorded(path, body string, cookies ...*http.Cookie) (int, error) {
	h.t.Helper()
	r, err := http.NewRequest(http.MethodPost, h.srv.URL+path, strings.NewReader(body))
	if err != nil {
		h.t.Fatal(err)
	}
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-CSRF", "1")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	for _, c := range cookies {
		r.AddCookie(c)
	}
	res, err := http.DefaultTransport.RoundTrip(r)
	if err != nil {
		return 0, err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	return res.StatusCode, nil
}

// TestAPanickingProbeDoesNotKeepTheCircuitHalfOpen: the probe of a half-open quota
// circuit ends however the Minter ends, a panic included, so the next mint probes again
// instead of being refused "retry in 1 s" until a restart.
func TestAPanickingProbeDoesNotKeepTheCircuitHalfOpen(t *testing.T) {
	minter := &panickyMinter{}
	h := newHarness(t, func(c *api.Config) {
		minter.Minter = c.Minter
		c.Minter = minter
	})
	alice := h.login("alice", "alice-pw")

	h.setMint(failMint(http.StatusPaymentRequired, ""))
	if r, _ := h.mint(alice, `{"grant":"tts"}`); r.status != 502 {
		t.Fatalf("the 402: %d %s, want 502", r.status, r.body)
	}
	h.setMint(nil)
	h.clk.Advance(api.DefaultQuotaCoolDown) // a 402 without Retry-After

	// The probe panics; net/http recovers and drops the connection.
	minter.armed.Store(true)
	if status, err := h.postUnrecorded("/api/token", `{"grant":"tts"}`, alice); err == nil &&
		status == http.StatusOK {
		t.Fatal("a panicking Minter produced a token")
	}
	minter.armed.Store(false)

	var panics int
	for _, ev := range h.logs.Events(t, "token_mint_failed") {
		if ev["reason"] == "minter_panic" && ev["probe"] == true && ev["level"] == "ERROR" {
			panics++
		}
	}
	if panics != 1 {
		t.Errorf("%d minter_panic errors for the probe, want 1", panics)
	}

	// No time passes: the next mint is the new probe, and it closes the circuit.
	for i := range 3 {
		r, c := h.mint(alice, `{"grant":"tts"}`)
		if r.status != 200 || c == nil {
			t.Fatalf("mint %d after the panicking probe: %d %s Retry-After %q, want 200", i,
				r.status, r.body, r.header.Get("Retry-After"))
		}
	}
	if n := len(h.quotaEvents("closed")); n != 1 {
		t.Errorf("%d upstream_quota closed events, want 1", n)
	}
}
