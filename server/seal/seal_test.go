package seal

import (
	"bytes"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

func newSealer(t *testing.T) *Sealer {
	t.Helper()
	s, err := New(bytes.Repeat([]byte{7}, KeySize))
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func sample(g token.Grant) token.Token {
	return token.Token{
		Value:     token.NewValue("ctok_CANARY_abc.def.ghi"),
		Grant:     g,
		ExpiresAt: time.UnixMilli(1_780_000_000_123),
	}
}

func TestSealOpensForItsSessionAndGrant(t *testing.T) {
	s := newSealer(t)
	v, err := s.Seal("session-A", sample(token.TTS))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(v, "ctok_CANARY") || !strings.HasPrefix(v, "v1.") {
		t.Fatalf("sealed value %q is not opaque and versioned", v)
	}

	got, err := s.Open(v, "session-A", token.TTS)
	if err != nil {
		t.Fatal(err)
	}
	want := sample(token.TTS)
	if got.Value.Reveal() != want.Value.Reveal() || got.Grant != token.TTS ||
		!got.ExpiresAt.Equal(want.ExpiresAt) {
		t.Errorf("opened %+v, want %+v", got, want)
	}

	again, _ := s.Seal("session-A", sample(token.TTS))
	if again == v {
		t.Error("two seals of the same token are identical; the nonce is not random")
	}
}

func TestOpenRefusesEveryFlippedByte(t *testing.T) {
	s := newSealer(t)
	v, _ := s.Seal("session-A", sample(token.TTS))

	for i := len(prefix); i < len(v); i++ {
		b := []byte(v)
		// Swap to another base64url character so the change survives decoding.
		if b[i] == 'A' {
			b[i] = 'B'
		} else {
			b[i] = 'A'
		}
		if _, err := s.Open(string(b), "session-A", token.TTS); err == nil {
			t.Fatalf("flipping byte %d still opened", i)
		}
	}
}

func TestOpenRefusesForeignAndBrokenValues(t *testing.T) {
	s := newSealer(t)
	v, _ := s.Seal("session-A", sample(token.TTS))
	other, _ := New(bytes.Repeat([]byte{8}, KeySize))
	otherKeyValue, _ := other.Seal("session-A", sample(token.TTS))

	tests := []struct {
		name    string
		value   string
		session string
		grant   token.Grant
		want    error
	}{
		{"another session", v, "session-B", token.TTS, ErrForged},
		{"another grant", v, "session-A", token.STT, ErrForged},
		{"another key", otherKeyValue, "session-A", token.TTS, ErrForged},
		{"raw token", "ctok_CANARY_abc", "session-A", token.TTS, ErrMalformed},
		{"empty", "", "session-A", token.TTS, ErrMalformed},
		{"prefix only", "v1.", "session-A", token.TTS, ErrMalformed},
		{"not base64", "v1.!!!!", "session-A", token.TTS, ErrMalformed},
		{"truncated", v[:20], "session-A", token.TTS, ErrMalformed},
		{"future version", "v2." + v[3:], "session-A", token.TTS, ErrVersion},
		{"oversize", "v1." + strings.Repeat("A", MaxValueLen), "session-A", token.TTS, ErrOversize},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := s.Open(tt.value, tt.session, tt.grant)
			if !errors.Is(err, tt.want) {
				t.Errorf("Open error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestSealedCookieFitsTheBrowserBudget(t *testing.T) {
	s := newSealer(t)
	// The longest token the minter accepts.
	long := token.Token{Value: token.NewValue(strings.Repeat("a", 2800)), Grant: token.Agent,
		ExpiresAt: time.Now()}
	v, err := s.Seal(strings.Repeat("s", 43), long)
	if err != nil {
		t.Fatal(err)
	}
	if n := len(CookieName(token.Agent)) + len(v); n > CookieBudget {
		t.Errorf("cookie name+value is %d bytes, over %d", n, CookieBudget)
	}

	huge := token.Token{Value: token.NewValue(strings.Repeat("a", 4000)), Grant: token.TTS}
	if _, err := s.Seal("s", huge); !errors.Is(err, ErrOversize) {
		t.Errorf("sealing an oversize token: %v, want ErrOversize", err)
	}
}

func TestSealRefusesBadInput(t *testing.T) {
	s := newSealer(t)
	if _, err := s.Seal("", sample(token.TTS)); err == nil {
		t.Error("sealed for an empty session id")
	}
	if _, err := s.Seal("s", sample("admin")); err == nil {
		t.Error("sealed an unknown grant")
	}
}

func TestCookieNames(t *testing.T) {
	for g, want := range map[token.Grant]string{
		token.TTS: "__Host-Http-vg_tts", token.STT: "__Host-Http-vg_stt",
		token.Agent: "__Host-Http-vg_agent",
	} {
		if got := CookieName(g); got != want {
			t.Errorf("CookieName(%s) = %q, want %q", g, got, want)
		}
	}
}

func TestLoadKeyFile(t *testing.T) {
	dir := t.TempDir()
	raw := bytes.Repeat([]byte{0xAB}, KeySize)
	files := map[string][]byte{
		"raw":       raw,
		"hex":       []byte(hex.EncodeToString(raw) + "\n"),
		"short":     raw[:16],
		"bad hex":   []byte(strings.Repeat("zz", KeySize)),
		"long text": []byte(strings.Repeat("ab", KeySize+1)),
	}
	for name, content := range files {
		t.Run(name, func(t *testing.T) {
			p := filepath.Join(dir, strings.ReplaceAll(name, " ", "_"))
			if err := os.WriteFile(p, content, 0o600); err != nil {
				t.Fatal(err)
			}
			key, err := LoadKeyFile(p)
			ok := name == "raw" || name == "hex"
			if ok && (err != nil || !bytes.Equal(key, raw)) {
				t.Fatalf("LoadKeyFile = %x, %v", key, err)
			}
			if !ok && err == nil {
				t.Fatalf("LoadKeyFile accepted %s", name)
			}
		})
	}
	if _, err := LoadKeyFile(filepath.Join(dir, "missing")); err == nil {
		t.Error("LoadKeyFile accepted a missing file")
	}
	if _, err := New(raw[:31]); err == nil {
		t.Error("New accepted a 31-byte key")
	}
}
