package api_test

import (
	"net/http"
	"testing"
)

// TestTrailingDataAfterTheObjectIsRefused: found by fuzzing; a stray "}" or "]" after the
// object slipped past the decoder's More check and the request was served.
func TestTrailingDataAfterTheObjectIsRefused(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	for _, body := range []string{`{"grant":"tts"}}`, `{"grant":"tts"}]`, `{"grant":"tts"} {}`,
		`{"grant":"tts"}1`, `{"grant":"tts"}"x"`} {
		r, _ := h.mint(sess, body)
		if r.status != http.StatusBadRequest || r.code() != "bad_request" {
			t.Errorf("body %s: %d %s, want 400 bad_request", body, r.status, r.code())
		}
	}
	if r, _ := h.mint(sess, `{"grant":"tts"}`+" \n\t"); r.status != http.StatusOK {
		t.Errorf("trailing white space: %d, want 200", r.status)
	}
}
