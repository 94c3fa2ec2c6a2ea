package token

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/voxgate/voxgate/internal/leak"
)

// TestParseUpstreamErrorWithholdsPiecesOfASecret: an upstream that echoes a secret less
// its last characters, a run of it, or its URL-escaped form in any field gets that field
// replaced whole by [REDACTED]; innocent fields, and ones sharing fewer than leak.Run
// bytes with a secret, pass.
func TestParseUpstreamErrorWithholdsPiecesOfASecret(t *testing.T) {
	tok := "tok_" + strings.Repeat("Ab3+/Z9q", 6) // escapes differently in a URL
	key := "sk_car_0123456789abcdefghij"
	esc := url.QueryEscape(tok)
	for _, tt := range []struct {
		name, field string
		want        string // "" means [REDACTED]
	}{
		{"the token less one character", "bad token " + tok[:len(tok)-1], ""},
		{"the token less two characters", tok[:len(tok)-2] + " rejected", ""},
		{"a run of the token", "seen " + tok[10:10+leak.Run] + " here", ""},
		{"a run of its URL-escaped form", "q=" + esc[5:5+leak.Run], ""},
		{"a run of the key", "key " + key[3:3+leak.Run], ""},
		{"a shorter run", "seen " + tok[10:10+leak.Run-1] + " here",
			"seen " + tok[10:10+leak.Run-1] + " here"},
		{"innocent text", "the transcript is empty", "the transcript is empty"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			body := `{"error_code":"c","title":"t","message":` + quote(tt.field) +
				`,"request_id":` + quote(tt.field) + `}`
			e := ParseUpstreamError(http.StatusUnauthorized, http.Header{}, []byte(body), key, tok)
			want := tt.want
			if want == "" {
				want = redacted
			}
			if e.Message != want || e.RequestID != want {
				t.Errorf("message %q, request id %q; want %q", e.Message, e.RequestID, want)
			}
			if e.Code != "c" || e.Title != "t" {
				t.Errorf("other fields changed: %q %q", e.Code, e.Title)
			}
		})
	}
}

func quote(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}
