package token

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
)

func TestParseUpstreamError(t *testing.T) {
	long := strings.Repeat("x", 2000)
	tests := []struct {
		name   string
		header http.Header
		body   string
		want   UpstreamError
	}{
		{"structured", nil,
			`{"error_code":"model_not_found","title":"Bad model","message":"no such model",` +
				`"request_id":"r1"}`,
			UpstreamError{Status: 400, Code: "model_not_found", Title: "Bad model",
				Message: "no such model", RequestID: "r1"}},
		{"null error_code", nil, `{"error_code":null,"title":"T","message":"M"}`,
			UpstreamError{Status: 400, Title: "T", Message: "M"}},
		{"gateway error string", nil, `{"error":"nope"}`,
			UpstreamError{Status: 400, Message: "nope"}},
		{"title: message text", http.Header{"X-Request-Id": {"h1"}},
			"Bad Request: transcript is empty\n",
			UpstreamError{Status: 400, Title: "Bad Request", Message: "transcript is empty",
				RequestID: "h1"}},
		{"bare text", nil, "something broke",
			UpstreamError{Status: 400, Message: "something broke"}},
		{"control characters dropped", nil, "Bad\r\nInjected: x",
			UpstreamError{Status: 400, Message: "Bad  Injected: x"}},
		{"long message capped", nil, `{"message":"` + long + `"}`,
			UpstreamError{Status: 400, Message: long[:maxErrorField]}},
		{"empty", nil, "", UpstreamError{Status: 400}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := tt.header
			if h == nil {
				h = http.Header{}
			}
			got := ParseUpstreamError(400, h, []byte(tt.body))
			if *got != tt.want {
				t.Errorf("got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestParseUpstreamErrorRedactsSecretsAndBearerCredentials(t *testing.T) {
	const secret = "ctok_SECRET_42"
	h := http.Header{"Cartesia-Request-Id": {"r-" + secret}, "Retry-After": {secret}}
	long := strings.Repeat("x", maxErrorField-20)
	body := `{"error_code":"c_` + secret + `","title":"got Bearer ` + secret +
		`","message":"` + long + secret + `, also bearer abc.DEF-ghi_123/+= and Bearer%20xyz"}`

	got := ParseUpstreamError(401, h, []byte(body), secret)
	all := fmt.Sprintf("%+v", *got)
	for _, leak := range []string{secret, "SECRET", "abc.DEF", "xyz"} {
		if strings.Contains(all, leak) {
			t.Errorf("%q survived: %s", leak, all)
		}
	}
	if got.Title != "got Bearer [REDACTED]" || got.Code != "c_[REDACTED]" {
		t.Errorf("title %q code %q", got.Title, got.Code)
	}
}

func TestRetryAfterIsSecondsOrAnHTTPDate(t *testing.T) {
	tests := []struct{ in, want string }{
		{"7", "7"},
		{"0", "0"},
		{" 120 ", "120"},
		{"Wed, 01 Apr 2026 10:00:00 GMT", "Wed, 01 Apr 2026 10:00:00 GMT"},
		{"Wednesday, 01-Apr-26 10:00:00 GMT", "Wed, 01 Apr 2026 10:00:00 GMT"},
		{"7  X-Injected: 1", ""},
		{"-1", ""},
		{"1.5", ""},
		{"1e3", ""},
		{"", ""},
		{"99999999999999999999", ""},
	}
	for _, tt := range tests {
		if got := CleanRetryAfter(tt.in); got != tt.want {
			t.Errorf("CleanRetryAfter(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
