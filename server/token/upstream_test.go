package token

import (
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
