// Package seal turns an access token into a cookie value that only this server can open,
// and only for the session and grant it was sealed for.
//
// Values are AES-256-GCM ciphertexts with a random nonce; the session id and the grant are
// authenticated additional data, so a value copied into another session's cookie jar, or
// renamed to another grant's cookie, fails to open. The package owns the token cookies'
// names and value format; it never reads requests, sets cookies or sees the API key.
package seal

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// KeySize is the sealing key length: 32 bytes selects AES-256.
const KeySize = 32

// prefix names the value format. A future format (or key rotation with a key id) gets a
// new prefix, and Open refuses prefixes it does not know.
const prefix = "v1."

// cookiePrefix is the prefix of every token cookie's name. __Host- makes browsers insist on
// Secure, Path=/ and no Domain; __Host-Http- additionally on HttpOnly.
const cookiePrefix = "__Host-Http-vg_"

// CookieBudget is the most bytes a browser keeps for one cookie's name plus value.
const CookieBudget = 4096

// MaxValueLen is the longest value Seal produces and Open accepts, leaving room for the
// longest token cookie name within CookieBudget.
var MaxValueLen = CookieBudget - len(CookieName(token.Agent))

// Errors Open returns. ErrForged covers every authentication failure: AES-GCM cannot tell a
// flipped byte from a value sealed for another session or grant, and neither should a
// caller trying to decide what to tell the client.
var (
	ErrMalformed = errors.New("seal: value is not a sealed token")
	ErrVersion   = errors.New("seal: value uses an unknown format version")
	ErrOversize  = errors.New("seal: value is too large")
	ErrForged    = errors.New("seal: value was tampered with or sealed for another session or grant")
)

// CookieName is the name of the cookie that carries grant's token.
func CookieName(g token.Grant) string { return cookiePrefix + string(g) }

// Sealer seals and opens token cookie values. It is safe for concurrent use.
type Sealer struct {
	aead cipher.AEAD
}

// New returns a Sealer for a 32-byte key.
func New(key []byte) (*Sealer, error) {
	if len(key) != KeySize {
		return nil, fmt.Errorf("seal: key is %d bytes, want %d", len(key), KeySize)
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, fmt.Errorf("seal: new cipher: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("seal: new GCM: %w", err)
	}
	return &Sealer{aead: aead}, nil
}

// NewRandom returns a Sealer with a fresh random key: cookies it seals die with the
// process, which is what a single instance without COOKIE_KEY_FILE wants.
func NewRandom() (*Sealer, error) {
	key := make([]byte, KeySize)
	_, _ = rand.Read(key) // crypto/rand.Read never fails; it crashes the program instead.
	return New(key)
}

// LoadKeyFile reads a sealing key from path: either exactly 32 raw bytes, or 64 hex digits
// (surrounding whitespace allowed). Replicas behind one origin must share this key.
func LoadKeyFile(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("seal: read key file: %w", err)
	}
	if len(b) == KeySize {
		return b, nil
	}
	text := strings.TrimSpace(string(b))
	if len(text) == 2*KeySize {
		key, err := hex.DecodeString(text)
		if err == nil {
			return key, nil
		}
	}
	return nil, fmt.Errorf("seal: key file holds %d bytes; want %d raw bytes or %d hex digits",
		len(b), KeySize, 2*KeySize)
}

// additionalData binds a value to one session and one grant. Neither part can contain
// the separator (session ids are base64url, grants are fixed words), so the encoding is
// unambiguous.
func additionalData(sessionID string, g token.Grant) []byte {
	return []byte(prefix + "\x00" + string(g) + "\x00" + sessionID)
}

// Seal encrypts t for one session. The plaintext holds the expiry (Unix ms) and the token
// text, so Open can report an expired token without asking upstream.
func (s *Sealer) Seal(sessionID string, t token.Token) (string, error) {
	if sessionID == "" {
		return "", errors.New("seal: empty session id")
	}
	if _, err := token.ParseGrant(string(t.Grant)); err != nil {
		return "", fmt.Errorf("seal: %w", err)
	}
	text := t.Value.Reveal()

	plain := make([]byte, 8, 8+len(text))
	binary.BigEndian.PutUint64(plain, uint64(t.ExpiresAt.UnixMilli()))
	plain = append(plain, text...)

	nonce := make([]byte, s.aead.NonceSize())
	_, _ = rand.Read(nonce)
	sealed := s.aead.Seal(nonce, nonce, plain, additionalData(sessionID, t.Grant))

	v := prefix + b64.EncodeToString(sealed)
	if len(v) > MaxValueLen {
		return "", fmt.Errorf("%w: sealed token is %d bytes, cookie room is %d",
			ErrOversize, len(v), MaxValueLen)
	}
	return v, nil
}

// Open decrypts a cookie value sealed for sessionID and grant. It refuses oversize input
// before any work, unknown versions, undecodable values and any authentication failure.
// The returned token may be expired; comparing ExpiresAt with the clock is the caller's
// job, so that it can answer token_expired rather than no_token.
func (s *Sealer) Open(value, sessionID string, g token.Grant) (token.Token, error) {
	if len(value) > MaxValueLen {
		return token.Token{}, ErrOversize
	}
	if !strings.HasPrefix(value, prefix) {
		if strings.HasPrefix(value, "v") && strings.Contains(value, ".") {
			return token.Token{}, ErrVersion
		}
		return token.Token{}, ErrMalformed
	}

	// Even a strict base64 decoder skips CR and LF; refusing them keeps every sealed
	// value to one accepted spelling (found by FuzzSealRoundTrip).
	body := value[len(prefix):]
	if strings.ContainsAny(body, "\r\n") {
		return token.Token{}, ErrMalformed
	}
	sealed, err := b64.DecodeString(body)
	if err != nil {
		return token.Token{}, ErrMalformed
	}
	n := s.aead.NonceSize()
	if len(sealed) < n+s.aead.Overhead()+8 {
		return token.Token{}, ErrMalformed
	}

	plain, err := s.aead.Open(nil, sealed[:n], sealed[n:], additionalData(sessionID, g))
	if err != nil {
		return token.Token{}, ErrForged
	}

	ms := int64(binary.BigEndian.Uint64(plain[:8]))
	return token.Token{
		Value:     token.NewValue(string(plain[8:])),
		Grant:     g,
		ExpiresAt: time.UnixMilli(ms),
	}, nil
}

// b64 is strict so that each value has exactly one encoding: a lax decoder ignores the
// unused low bits of the last character, and a flipped character there would still open.
var b64 = base64.RawURLEncoding.Strict()
