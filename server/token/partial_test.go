package token

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestParseUpstreamErrorWithholdsPiecesOfASecret: an upstream that echoes a secret less
// its last characters, a run of it, or its URL-escaped form in any field gets that field
// replaced whole by [REDACTED]; innocent fields, and ones sharing fewer than SecretRun
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
		{"a run of the token", "seen " + tok[10:10+SecretRun] + " here", ""},
		{"a run of its URL-escaped form", "q=" + esc[5:5+SecretRun], ""},
		{"a run of the key", "key " + key[3:3+SecretRun], ""},
		{"a shorter run", "seen " + tok[10:10+SecretRun-1] + " here",
			"seen " + tok[10:10+SecretRun-1] + " here"},
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

// TestSharesRun: runs of SecretRun bytes of any form count, shorter ones do not.
func TestSharesRun(t *testing.T) {
	forms := SecretForms("abc def/ghijklmnopqrstuvwxyz")
	if len(forms) != 2 {
		t.Fatalf("forms %q, want the secret and its escaped form", forms)
	}
	for s, want := range map[string]bool{
		"xx" + forms[0][2:2+SecretRun] + "yy":   true,
		"xx" + forms[1][1:1+SecretRun] + "yy":   true,
		"xx" + forms[0][2:2+SecretRun-1] + "yy": false,
		"":                                      false,
	} {
		if got := SharesRun(s, forms...); got != want {
			t.Errorf("SharesRun(%q) = %v, want %v", s, got, want)
		}
	}
}
