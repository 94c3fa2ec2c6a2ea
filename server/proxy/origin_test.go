package proxy_test

import (
	"testing"

	"github.com/voxgate/voxgate/server/proxy"
)

func TestParseOriginAcceptsBareOriginsOnly(t *testing.T) {
	for _, tt := range []struct{ in, origin, host string }{
		{"https://voice.example.com", "https://voice.example.com", "voice.example.com"},
		{"https://voice.example.com/", "https://voice.example.com", "voice.example.com"},
		{"http://127.0.0.1:8080", "http://127.0.0.1:8080", "127.0.0.1:8080"},
		{"http://[::1]:8080", "http://[::1]:8080", "[::1]:8080"},
		{"HTTPS://voice.example.com", "https://voice.example.com", "voice.example.com"},
	} {
		origin, host, err := proxy.ParseOrigin(tt.in)
		if err != nil || origin != tt.origin || host != tt.host {
			t.Errorf("ParseOrigin(%q) = %q %q %v, want %q %q", tt.in, origin, host, err,
				tt.origin, tt.host)
		}
	}
	for _, bad := range []string{"", "voice.example.com", "127.0.0.1:8080", "ftp://x",
		"wss://x", "https://", "https://u@x", "https://u:p@x", "https://x/path",
		"https://x//", "https://x?q=1", "https://x?", "https://x#f", "*", "null"} {
		if origin, _, err := proxy.ParseOrigin(bad); err == nil {
			t.Errorf("ParseOrigin(%q) accepted it as %q", bad, origin)
		}
	}
}

func TestIsExactOriginIsTheFormOfAnOriginHeader(t *testing.T) {
	for _, ok := range []string{"https://app.example.com", "http://localhost:3000",
		"http://[::1]:8080"} {
		if !proxy.IsExactOrigin(ok) {
			t.Errorf("IsExactOrigin(%q) = false", ok)
		}
	}
	for _, bad := range []string{"https://app.example.com/", "HTTPS://app.example.com",
		"app.example.com", "https://u@app.example.com", "https://app.example.com/x", "*"} {
		if proxy.IsExactOrigin(bad) {
			t.Errorf("IsExactOrigin(%q) = true", bad)
		}
	}
}
