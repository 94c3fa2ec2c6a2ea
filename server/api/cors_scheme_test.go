package api_test

import (
	"strings"
	"testing"

	"github.com/voxgate/voxgate/server/api"
)

// TestNewRefusesAPlainHTTPCORSOriginForAnHTTPSPublicOrigin: a page served over plain
// http can be rewritten by anyone on its network path, so trusting it with credentialed
// calls to an https deployment would undo what https protects. The start stops with a
// message naming the origin; an https origin, or any origin for an http deployment (a
// developer's machine), is fine.
func TestNewRefusesAPlainHTTPCORSOriginForAnHTTPSPublicOrigin(t *testing.T) {
	tests := []struct {
		public, cors string
		ok           bool
	}{
		{"https://voice.example", "http://app.voice.example", false},
		{"https://voice.example", "http://localhost:3000", false},
		{"https://voice.example", "https://app.voice.example", true},
		{"http://127.0.0.1:8080", "http://localhost:3000", true},
		{"http://127.0.0.1:8080", "https://app.voice.example", true},
	}
	for _, tt := range tests {
		c := minimalConfig(t)
		c.PublicOrigin, c.CORSOrigins = tt.public, []string{"https://other.voice.example", tt.cors}
		_, err := api.New(c)
		if tt.ok != (err == nil) {
			t.Errorf("public %s, CORS %s: error %v, want accepted %v", tt.public, tt.cors,
				err, tt.ok)
			continue
		}
		if err != nil && (!strings.Contains(err.Error(), tt.cors) ||
			!strings.Contains(err.Error(), "https")) {
			t.Errorf("the refusal %q does not say which origin and why", err)
		}
	}
}
