package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
)

// redacted is what every rendering of a secret prints instead of its value.
const redacted = "[REDACTED]"

// Environment variables that carry the API key. There is deliberately no flag: command
// lines show up in process listings.
const (
	EnvAPIKey     = "CARTESIA_API_KEY"
	EnvAPIKeyFile = "CARTESIA_API_KEY_FILE"
)

// ErrNoAPIKey reports that neither CARTESIA_API_KEY nor CARTESIA_API_KEY_FILE is set.
var ErrNoAPIKey = errors.New("token: no API key configured")

// APIKey is the Cartesia API key. Every way Go renders a value (fmt verbs, JSON, text
// marshalling, slog) prints [REDACTED]; only this package can read the key, and it uses it
// for exactly one request: POST {upstream}/access-token.
type APIKey struct {
	v string
}

// LoadAPIKey reads the key from CARTESIA_API_KEY or the file named by
// CARTESIA_API_KEY_FILE, trimming surrounding whitespace. getenv is usually os.Getenv.
// It returns ErrNoAPIKey when neither is set and an error naming the variable (never the
// value) when both are set or the value is unusable.
func LoadAPIKey(getenv func(string) string) (APIKey, error) {
	direct, file := getenv(EnvAPIKey), getenv(EnvAPIKeyFile)

	switch {
	case direct != "" && file != "":
		return APIKey{}, fmt.Errorf("token: both %s and %s are set; choose one",
			EnvAPIKey, EnvAPIKeyFile)
	case direct != "":
		return parseAPIKey(direct, EnvAPIKey)
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			// The path is configuration, not a secret, but the error text stays generic
			// about the content.
			return APIKey{}, fmt.Errorf("token: read %s: %w", EnvAPIKeyFile, err)
		}
		return parseAPIKey(string(b), EnvAPIKeyFile)
	default:
		return APIKey{}, ErrNoAPIKey
	}
}

// parseAPIKey trims and checks a key; source names where it came from for the error.
func parseAPIKey(raw, source string) (APIKey, error) {
	k := strings.TrimSpace(raw)
	if k == "" {
		return APIKey{}, fmt.Errorf("token: %s is empty", source)
	}

	// The key goes into an HTTP header; anything outside visible ASCII would either be
	// rejected by net/http at request time or split the header.
	for i := 0; i < len(k); i++ {
		if k[i] <= ' ' || k[i] > '~' {
			return APIKey{}, fmt.Errorf("token: %s holds a character that cannot appear "+
				"in an API key (position %d)", source, i)
		}
	}
	return APIKey{v: k}, nil
}

// RandomAPIKey makes a fresh key for the in-process emulator and returns it twice: as an
// APIKey for the Minter and as plain text for the emulator's accepted-key list. It is the
// only way plain key text ever leaves this package, and only for a key that this process
// invented and that no one can bill.
func RandomAPIKey() (APIKey, string) {
	k := "sk_car_emulator_" + rand.Text()
	return APIKey{v: k}, k
}

// IsZero reports whether no key is held.
func (k APIKey) IsZero() bool { return k.v == "" }

// String implements fmt.Stringer.
func (k APIKey) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v).
func (k APIKey) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb, including %x and %q, is redacted.
func (k APIKey) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler.
func (k APIKey) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (k APIKey) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer.
func (k APIKey) LogValue() slog.Value { return slog.StringValue(redacted) }

// Value is an access token's secret text. It renders as [REDACTED] everywhere, like
// APIKey; the proxy and the cookie sealer read it with Reveal.
type Value struct {
	v string
}

// NewValue wraps token text, for example one just opened from a sealed cookie.
func NewValue(s string) Value { return Value{v: s} }

// Reveal returns the token text. Call it only to build an Authorization header, to seal
// the token, or to answer it on the one route built for that (direct mode); never to log it.
func (v Value) Reveal() string { return v.v }

// Fingerprint is a short, one-way stand-in for the token, for audit logs: enough to tie
// the log lines about one token together, far too little to recover or guess the token.
func (v Value) Fingerprint() string {
	sum := sha256.Sum256([]byte(v.v))
	return hex.EncodeToString(sum[:6])
}

// IsZero reports whether no token text is held.
func (v Value) IsZero() bool { return v.v == "" }

// String implements fmt.Stringer.
func (v Value) String() string { return redacted }

// GoString implements fmt.GoStringer (%#v).
func (v Value) GoString() string { return redacted }

// Format implements fmt.Formatter so that every verb is redacted.
func (v Value) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte(redacted)) }

// MarshalJSON implements json.Marshaler.
func (v Value) MarshalJSON() ([]byte, error) { return []byte(`"` + redacted + `"`), nil }

// MarshalText implements encoding.TextMarshaler.
func (v Value) MarshalText() ([]byte, error) { return []byte(redacted), nil }

// LogValue implements slog.LogValuer.
func (v Value) LogValue() slog.Value { return slog.StringValue(redacted) }
