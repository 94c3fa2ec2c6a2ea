package token

import (
	"net/http"
	"strconv"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"
)

// fuzzSecrets are the credentials the fuzzed upstream "request" carried. They use the
// alphabet of real keys and tokens and are longer than the [REDACTED] marker's letters,
// so finding one in a field can only mean it leaked.
var fuzzSecrets = []string{"sk_car_CANARY_fuzz_7f3a", "ctok_CANARY_fuzz.eyJ9.sig"}

// FuzzParseUpstreamError: whatever an upstream answers (status, headers, body), the
// parsed error carries neither credential, no control characters or broken UTF-8, no
// field over the cap, and a Retry-After that is either empty or one of its two well-formed shapes.
func FuzzParseUpstreamError(f *testing.F) {
	seeds := []struct {
		status     int
		retry, rid string
		body       string
	}{
		{401, "", "", `{"error_code":"unauthorized","title":"Unauthorized","message":"bad key ` +
			fuzzSecrets[0] + `","request_id":"r1"}`},
		{429, "30", "req-2", "Rate limited: slow down, Bearer " + fuzzSecrets[1]},
		{500, "Wed, 21 Oct 2015 07:28:00 GMT", "", `{"error":"gateway \u0073k_car_CANARY_fuzz_7f3a"}`},
		{400, "-1", "", "line one\r\nSet-Cookie: x=1\x00\x1b[31m"},
		{503, "+5", "\x00id", strings.Repeat("é", 400) + fuzzSecrets[0]},
		{418, "99999999999", "", `{"title":null,"message":7}`},
		{502, " 12 ", "", "authorization: bearer%20" + fuzzSecrets[1] + "=="},
		{403, "", "", "\xff\xfe" + fuzzSecrets[0][:10] + "\xff" + fuzzSecrets[0][10:]},
	}
	for _, s := range seeds {
		f.Add(s.status, s.retry, s.rid, []byte(s.body))
	}

	f.Fuzz(func(t *testing.T, status int, retry, rid string, body []byte) {
		h := http.Header{}
		h.Set("Retry-After", retry)
		h.Set("Cartesia-Request-Id", rid)
		e := ParseUpstreamError(status, h, body, fuzzSecrets...)

		if e.Status != status {
			t.Fatalf("status %d became %d", status, e.Status)
		}
		fields := map[string]string{"code": e.Code, "title": e.Title, "message": e.Message,
			"request_id": e.RequestID, "Error()": e.Error()}
		for name, v := range fields {
			for _, sec := range fuzzSecrets {
				if strings.Contains(v, sec) {
					t.Fatalf("%s %q repeats a credential", name, v)
				}
			}
			if name == "Error()" {
				continue
			}
			if len(v) > maxErrorField {
				t.Fatalf("%s is %d bytes, over the %d cap", name, len(v), maxErrorField)
			}
			if !utf8.ValidString(v) {
				t.Fatalf("%s %q is not valid UTF-8", name, v)
			}
			if strings.ContainsFunc(v, unicode.IsControl) {
				t.Fatalf("%s %q carries control characters", name, v)
			}
		}

		if ra := e.RetryAfter; ra != "" {
			n, err := strconv.Atoi(ra)
			_, derr := http.ParseTime(ra)
			if (err != nil || n < 0 || strconv.Itoa(n) != ra) && derr != nil {
				t.Fatalf("Retry-After %q relayed as %q", retry, ra)
			}
		}
	})
}

// FuzzRedact: after Redact, neither secret and no "Bearer <credential>" remains.
func FuzzRedact(f *testing.F) {
	f.Add("Bearer abc.def", "abc")
	f.Add("key=sk_car_x&token=sk_car_x", "sk_car_x")
	f.Add("bEaReR\t\tZZZ== and BEARER%20YYY", "")
	f.Add("aaaa", "aa")
	f.Fuzz(func(t *testing.T, s, secret string) {
		out := Redact(s, secret)
		// A secret that is itself part of the marker cannot be told from it.
		if len(secret) > len(redacted) && strings.Contains(out, secret) {
			t.Fatalf("Redact(%q, %q) = %q keeps the secret", s, secret, out)
		}
		// The marker starts with '[', which no credential contains: any match left is a
		// credential Redact missed.
		if m := bearerCredential.FindString(out); m != "" {
			t.Fatalf("Redact(%q) = %q keeps the credential %q", s, out, m)
		}
	})
}
