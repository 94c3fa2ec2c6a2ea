package token

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const canaryKey = "sk_car_CANARY_4f9b2c"

// holder mimics a config struct that carries secrets next to ordinary fields.
type holder struct {
	Name  string
	Key   APIKey
	Token Value
	Ptr   *APIKey
}

func TestSecretsRenderRedactedEverywhere(t *testing.T) {
	key := APIKey{v: canaryKey}
	tok := NewValue("ctok_CANARY_1")
	h := holder{Name: "x", Key: key, Token: tok, Ptr: &key}

	var renders []string
	for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d", "%T %v"} {
		renders = append(renders, fmt.Sprintf(verb, h), fmt.Sprintf(verb, key),
			fmt.Sprintf(verb, tok), fmt.Sprintf(verb, &key))
	}
	renders = append(renders, fmt.Sprint(h), fmt.Sprintln(key, tok))

	js, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	renders = append(renders, string(js))
	mapJS, _ := json.Marshal(map[APIKey]Value{key: tok})
	renders = append(renders, string(mapJS))

	var logs bytes.Buffer
	for _, lg := range []*slog.Logger{
		slog.New(slog.NewTextHandler(&logs, nil)),
		slog.New(slog.NewJSONHandler(&logs, nil)),
	} {
		lg.Info("cfg", "key", key, "token", tok, "holder", h, "ptr", &key)
		lg.Info("cfg", slog.Any("holder", h), slog.Group("g", "key", key))
	}
	renders = append(renders, logs.String())

	for _, r := range renders {
		if strings.Contains(r, canaryKey) || strings.Contains(r, "ctok_CANARY") {
			t.Errorf("secret leaked in rendering: %s", r)
		}
	}
	if !strings.Contains(string(js), "[REDACTED]") {
		t.Errorf("JSON rendering %s lacks [REDACTED]", js)
	}
}

func TestLoadAPIKey(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good := write("good", "\n  "+canaryKey+"\r\n")
	empty := write("empty", " \n\t")
	spaced := write("spaced", "sk_car_CANARY bad")

	tests := []struct {
		name    string
		env     map[string]string
		wantErr error // nil: success
		errText string
	}{
		{name: "from env, trimmed", env: map[string]string{EnvAPIKey: " " + canaryKey + "\n"}},
		{name: "from file, trimmed", env: map[string]string{EnvAPIKeyFile: good}},
		{name: "none", env: map[string]string{}, wantErr: ErrNoAPIKey},
		{name: "both", env: map[string]string{EnvAPIKey: canaryKey, EnvAPIKeyFile: good},
			errText: "both"},
		{name: "empty file", env: map[string]string{EnvAPIKeyFile: empty}, errText: "empty"},
		{name: "missing file", env: map[string]string{EnvAPIKeyFile: filepath.Join(dir, "nope")},
			errText: "read"},
		{name: "inner space", env: map[string]string{EnvAPIKeyFile: spaced},
			errText: "character"},
		{name: "whitespace only env", env: map[string]string{EnvAPIKey: "  "}, errText: "empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k, err := LoadAPIKey(func(n string) string { return tt.env[n] })
			if tt.wantErr == nil && tt.errText == "" {
				if err != nil {
					t.Fatalf("LoadAPIKey: %v", err)
				}
				if k.v != canaryKey {
					t.Fatalf("key not trimmed to the canary")
				}
				return
			}
			if err == nil {
				t.Fatal("LoadAPIKey succeeded, want an error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error %v, want %v", err, tt.wantErr)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not mention %q", err, tt.errText)
			}
			if strings.Contains(err.Error(), "CANARY") {
				t.Errorf("error %q quotes the key", err)
			}
		})
	}
}

func TestRandomAPIKeysDiffer(t *testing.T) {
	k1, p1 := RandomAPIKey()
	k2, p2 := RandomAPIKey()
	if p1 == p2 || k1.v != p1 || k2.v != p2 || len(p1) < 30 {
		t.Fatalf("random keys not fresh and consistent")
	}
}

func TestParseGrant(t *testing.T) {
	for _, s := range []string{"tts", "stt", "agent"} {
		if g, err := ParseGrant(s); err != nil || string(g) != s {
			t.Errorf("ParseGrant(%q) = %q, %v", s, g, err)
		}
	}
	for _, s := range []string{"", "TTS", "admin", "tts,stt", " tts"} {
		if _, err := ParseGrant(s); err == nil {
			t.Errorf("ParseGrant(%q) accepted", s)
		}
	}
}

func TestTokenFingerprintIsShortStableAndOneWay(t *testing.T) {
	a, b := NewValue("ctok_CANARY_1"), NewValue("ctok_CANARY_2")
	fp := a.Fingerprint()
	if len(fp) != 12 || fp != NewValue("ctok_CANARY_1").Fingerprint() {
		t.Errorf("fingerprint %q is not 12 stable hex digits", fp)
	}
	if fp == b.Fingerprint() {
		t.Error("two tokens share a fingerprint")
	}
	if strings.Contains(fp, "ctok") || strings.Contains(fp, "CANARY") {
		t.Errorf("fingerprint %q shows the token", fp)
	}
}
