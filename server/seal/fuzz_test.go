package seal

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// fuzzKey is the key the fuzz targets seal with. The values in sealedByFuzzKey were
// sealed with it once; being fixed text, they are the same in every fuzz worker.
var fuzzKey = bytes.Repeat([]byte{7}, KeySize)

// sealedByFuzzKey are the only values Open may ever accept under fuzzKey in FuzzOpen,
// each only for its own session and grant.
var sealedByFuzzKey = []struct {
	value, session string
	grant          token.Grant
	token          string
}{
	{"v1.S5-RZfWZzLhC4FcwaA9Roh0xGjudeyEzXtdlEVIRmL4OeKQe68BU-OJZ3QdNKETt7owr",
		"session-A", token.TTS, "ctok_CANARY_tts"},
	{"v1.yx1broVQKCtokXbcYQ0X5O61XDo3o30TI3yoq6UK9JFSrVgt2lKgw4oKhXwDpeNaHfvr",
		"session-B", token.STT, "ctok_CANARY_stt"},
	{"v1.3wwy8u-K0zAIuvsbzCHa619kePr9KE-3egYaG-WMT8kLcRLLMAc5EyCFYiseJ575fBSoQ_g",
		"session-A", token.Agent, "ctok_CANARY_agent"},
}

// fuzzExpiry is the expiry every value in sealedByFuzzKey carries.
var fuzzExpiry = time.UnixMilli(1_780_000_000_123)

var openErrors = []error{ErrMalformed, ErrVersion, ErrOversize, ErrForged}

// FuzzOpen: a cookie value opens only if it is byte for byte a value this key sealed,
// presented for the session and grant it was sealed for. Everything else is refused with
// one of the package's errors, whatever the attacker changes: one character, the
// encoding, the session, the grant or the cookie name.
func FuzzOpen(f *testing.F) {
	s, err := New(fuzzKey)
	if err != nil {
		f.Fatal(err)
	}
	for _, c := range sealedByFuzzKey {
		f.Add(c.value, c.session, string(c.grant))
		f.Add(c.value, c.session+" ", string(c.grant))
		f.Add(c.value+"=", c.session, string(c.grant))
		f.Add(strings.Replace(c.value, "v1.", "v2.", 1), c.session, string(c.grant))
		f.Add(c.value[:len(c.value)-1]+"A", c.session, string(c.grant))
	}
	f.Add("", "session-A", "tts")
	f.Add("v1.", "session-A", "stt")
	f.Add(strings.Repeat("A", MaxValueLen+1), "s", "tts")

	f.Fuzz(func(t *testing.T, value, session, grant string) {
		tok, err := s.Open(value, session, token.Grant(grant))
		if err != nil {
			if !slices.Contains(openErrors, err) {
				t.Fatalf("Open refused with %v, which is none of the package's errors", err)
			}
			if !tok.Value.IsZero() {
				t.Fatal("Open returned a token with its error")
			}
			return
		}

		i := slices.IndexFunc(sealedByFuzzKey, func(c struct {
			value, session string
			grant          token.Grant
			token          string
		}) bool {
			return c.value == value
		})
		if i < 0 {
			t.Fatalf("Open accepted %q, a value it never sealed", value)
		}
		c := sealedByFuzzKey[i]
		if session != c.session || token.Grant(grant) != c.grant {
			t.Fatalf("value sealed for %s/%s opened for %q/%q", c.session, c.grant, session,
				grant)
		}
		if tok.Value.Reveal() != c.token || tok.Grant != c.grant ||
			!tok.ExpiresAt.Equal(fuzzExpiry) {
			t.Fatalf("opened %q %s %v, sealed %q %s %v", tok.Value.Reveal(), tok.Grant,
				tok.ExpiresAt, c.token, c.grant, fuzzExpiry)
		}
	})
}

// FuzzSealRoundTrip: whatever the token and session, a sealed value opens for exactly
// that session and grant and no other, and no single-character change survives.
func FuzzSealRoundTrip(f *testing.F) {
	f.Add("session-A", "ctok_CANARY_abc.def", uint8(0), int64(1_780_000_000_123), "session-B",
		uint16(5), byte('x'))
	f.Add("s", "", uint8(1), int64(-1), "", uint16(10), byte(0x0a))
	f.Add("s\x00tts", "\xff\xfe", uint8(2), int64(0), "s", uint16(3), byte('='))
	f.Add("s", strings.Repeat("t", 3000), uint8(0), int64(1), "t", uint16(9), byte('A'))

	s, err := New(fuzzKey)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, session, text string, pick uint8, ms int64, other string,
		at uint16, b byte) {
		g := token.Grants()[int(pick)%len(token.Grants())]
		in := token.Token{Value: token.NewValue(text), Grant: g, ExpiresAt: time.UnixMilli(ms)}

		v, err := s.Seal(session, in)
		switch {
		case session == "":
			if err == nil {
				t.Fatal("sealed for an empty session id")
			}
			return
		case errors.Is(err, ErrOversize):
			return
		case err != nil:
			t.Fatal(err)
		}
		if len(v) > MaxValueLen || len(CookieName(g))+len(v) > CookieBudget {
			t.Fatalf("sealed value of %d bytes breaks the cookie budget", len(v))
		}
		if len(text) >= 4 && strings.Contains(v, text) {
			t.Fatal("the sealed value shows the token")
		}

		out, err := s.Open(v, session, g)
		if err != nil || out.Value.Reveal() != text || out.Grant != g ||
			out.ExpiresAt.UnixMilli() != ms {
			t.Fatalf("round trip: %v, %+v", err, out)
		}
		if other != session {
			if _, err := s.Open(v, other, g); !errors.Is(err, ErrForged) {
				t.Fatalf("value for %q opened for %q: %v", session, other, err)
			}
		}
		for _, og := range token.Grants() {
			if _, err := s.Open(v, session, og); og != g && !errors.Is(err, ErrForged) {
				t.Fatalf("%s value opened as %s: %v", g, og, err)
			}
		}

		i := int(at) % len(v)
		changed := v[:i] + string(b) + v[i+1:]
		if changed != v {
			if _, err := s.Open(changed, session, g); err == nil {
				t.Fatalf("value with byte %d changed to %q still opens", i, b)
			}
		}
		inserted := v[:i] + string(b) + v[i:]
		if _, err := s.Open(inserted, session, g); err == nil {
			t.Fatalf("value with %q inserted at %d still opens", b, i)
		}
	})
}
