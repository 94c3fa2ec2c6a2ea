package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/voxgate/voxgate/scripts/testca"
)

func TestTLSNeedsBothFilesOrNeither(t *testing.T) {
	files, err := testca.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, cert, key string
		wantTLS         bool
		wantErr         string
	}{
		{"neither: plain http", "", "", false, ""},
		{"both", files.Cert, files.Key, true, ""},
		{"certificate only", files.Cert, "", false, "together"},
		{"key only", "", files.Key, false, "together"},
		{"unreadable", "/nonexistent.pem", files.Key, false, "load TLS"},
		{"swapped", files.Key, files.Cert, false, "load TLS"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg, err := loadTLS(tt.cert, tt.key)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("loadTLS error %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if (cfg != nil) != tt.wantTLS {
				t.Fatalf("TLS config %v, want TLS=%v", cfg, tt.wantTLS)
			}
			if cfg != nil && (len(cfg.NextProtos) != 1 || cfg.NextProtos[0] != "http/1.1") {
				t.Errorf("ALPN %q, want only http/1.1 so WebSockets upgrade", cfg.NextProtos)
			}
		})
	}
}

func TestBadTLSConfigurationFailsBeforeListening(t *testing.T) {
	var stdout, stderr bytes.Buffer
	env := map[string]string{"TLS_CERT_FILE": "/nonexistent.pem", "EMULATOR_API_KEYS": "sk_test"}
	err := run([]string{"-addr", "127.0.0.1:0"}, func(k string) string { return env[k] },
		&stdout, &stderr)
	if err == nil || !strings.Contains(err.Error(), "together") {
		t.Errorf("run error %v, want the half-configured TLS named", err)
	}
	if strings.Contains(stdout.String(), "listening") {
		t.Errorf("it listened anyway: %s", stdout.String())
	}
}
