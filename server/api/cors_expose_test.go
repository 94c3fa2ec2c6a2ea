package api_test

import (
	"io"
	"net/http"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/voxgate/voxgate/server/sectest"
)

// exposed returns the header names an Access-Control-Expose-Headers answer lists, in
// lower case (browsers compare them case-insensitively).
func exposed(r resp) []string {
	var out []string
	for _, v := range r.header.Values("Access-Control-Expose-Headers") {
		for name := range strings.SplitSeq(v, ",") {
			out = append(out, strings.ToLower(strings.TrimSpace(name)))
		}
	}
	return out
}

// TestCORSOriginMayReadRetryAfterAndRequestID: a listed origin's script reads what a
// same-origin page reads: Retry-After to back off by, and the Cartesia-Request-Id the
// proxy relays. Without Access-Control-Expose-Headers the browser would hide both.
func TestCORSOriginMayReadRetryAfterAndRequestID(t *testing.T) {
	h := newHarness(t, withCORS(appOrigin))
	var limited atomic.Bool
	limited.Store(true)
	h.fake.Handle(sectest.RouteTTSBytes, http.HandlerFunc(func(w http.ResponseWriter,
		_ *http.Request) {
		w.Header().Set("Cartesia-Request-Id", "req_cors")
		if limited.Load() {
			w.Header().Set("Retry-After", "7")
			w.WriteHeader(http.StatusTooManyRequests)
			_, _ = io.WriteString(w, `{"error_code":"rate","title":"Slow down"}`)
			return
		}
		w.Header().Set("Content-Type", "audio/wav")
		_, _ = io.WriteString(w, "RIFF")
	}))

	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)
	call := func() resp {
		return h.do(req{path: "/cartesia/tts/bytes", body: `{"transcript":"hi"}`,
			cookies: []*http.Cookie{sess, tts}, header: fromOrigin(appOrigin)})
	}
	want := []string{"retry-after", "cartesia-request-id"}

	r := call()
	if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") != "7" {
		t.Fatalf("upstream 429: %d %s Retry-After %q", r.status, r.body,
			r.header.Get("Retry-After"))
	}
	for _, name := range want {
		if !slices.Contains(exposed(r), name) {
			t.Errorf("the 429 exposes %q, want %s among them", exposed(r), name)
		}
	}

	limited.Store(false)
	r = call()
	if r.status != 200 || r.header.Get("Cartesia-Request-Id") != "req_cors" {
		t.Fatalf("success: %d %v", r.status, r.header)
	}
	for _, name := range want {
		if !slices.Contains(exposed(r), name) {
			t.Errorf("the success exposes %q, want %s among them", exposed(r), name)
		}
	}

	// The same call from the page's own origin needs no CORS header, and gets none.
	r = h.do(req{path: "/cartesia/tts/bytes", body: `{"transcript":"hi"}`,
		cookies: []*http.Cookie{sess, tts}, header: map[string]string{"Origin": h.origin}})
	if r.status != 200 || len(corsHeaders(r)) != 0 {
		t.Errorf("same-origin call: %d with CORS headers %v", r.status, corsHeaders(r))
	}
}
