package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/token"
)

func TestDirectModeNeedsAnUpstreamThePageCanReach(t *testing.T) {
	tts := []token.Grant{token.TTS}
	tests := []struct {
		name     string
		direct   []token.Grant
		origin   string
		upstream string
		// want lists what the error must name; nil means no error.
		want []string
	}{
		{"Cartesia from an https page", tts, "https://voice.example.com",
			"https://api.cartesia.ai", nil},
		{"emulator from a loopback page", tts, "http://127.0.0.1:8080",
			"http://127.0.0.1:41000", nil},
		{"emulator from localhost over https", tts, "https://localhost:8443",
			"http://127.0.0.1:41000", nil},
		{"emulator from an IPv6 loopback page", tts, "http://[::1]:8080",
			"http://127.0.0.1:41000", nil},
		{"emulator from a .localhost page", tts, "http://voice.localhost:8080",
			"http://127.0.0.1:41000", nil},
		{"direct mode off", nil, "https://voice.example.com", "http://127.0.0.1:41000", nil},
		{"mixed content", tts, "https://voice.example.com", "http://api.example.com",
			[]string{"DIRECT_GRANTS", "PUBLIC_ORIGIN", "UPSTREAM_URL", "mixed content"}},
		{"emulator from a remote page", tts, "https://voice.example.com",
			"http://127.0.0.1:41000",
			[]string{"DIRECT_GRANTS", "PUBLIC_ORIGIN", "UPSTREAM_URL", "loopback"}},
		{"emulator from a LAN address", tts, "http://192.168.1.5:8080",
			"http://[::1]:41000", []string{"DIRECT_GRANTS", "PUBLIC_ORIGIN", "loopback"}},
		{"local https upstream from a remote page", tts, "https://voice.example.com",
			"https://localhost:9443", []string{"DIRECT_GRANTS", "loopback"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkDirectReach(tt.direct, tt.origin, tt.upstream)
			if tt.want == nil {
				if err != nil {
					t.Errorf("refused: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

// TestStartRefusesDirectModeThePageCannotReach: the built-in emulator (or a local
// upstream) listens on loopback, so direct mode for pages served from another host stops
// the start before anything listens for long, naming the variables.
func TestStartRefusesDirectModeThePageCannotReach(t *testing.T) {
	for name, env := range map[string]map[string]string{
		"built-in emulator": {},
		"loopback upstream": {token.EnvAPIKey: sectest.CanaryKey,
			"UPSTREAM_URL": "http://127.0.0.1:9"},
	} {
		t.Run(name, func(t *testing.T) {
			env["ADDR"] = "127.0.0.1:0"
			env["DIRECT_GRANTS"] = "tts"
			env["PUBLIC_ORIGIN"] = "https://voice.example.com"
			var out, errOut bytes.Buffer
			err := run(context.Background(), nil, envOf(env), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), "DIRECT_GRANTS") ||
				!strings.Contains(err.Error(), "PUBLIC_ORIGIN") {
				t.Fatalf("run error %v, want one naming DIRECT_GRANTS and PUBLIC_ORIGIN", err)
			}
			if strings.Contains(err.Error()+out.String()+errOut.String(), sectest.CanaryKey) {
				t.Error("the key was printed")
			}
			if out.Len() != 0 {
				t.Errorf("a refused start announced itself: %s", out.String())
			}
		})
	}

	// The same page origin without direct mode starts: the proxy reaches the emulator.
	base, _, _ := started(t, map[string]string{"DEMO_PASSWORD": "CANARYPW",
		"PUBLIC_ORIGIN": "https://voice.example.com"})
	if base != "https://voice.example.com" {
		t.Errorf("listening on %q, want the configured public origin", base)
	}
}
