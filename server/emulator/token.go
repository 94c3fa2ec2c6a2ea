package emulator

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
)

// Access tokens are HS256 JWTs shaped like Cartesia's published examples (reference §2.2):
// header {"alg":"HS256","kid":...}, payload {grants, jti, iat, exp, iss}. They are signed
// with a secret drawn per emulator, so tokens die with the process that minted them.

// tokenIssuer is the iss claim of every token (Cartesia's own).
const tokenIssuer = "https://api.cartesia.ai"

// Grant names (reference §3.1).
const (
	grantTTS   = "tts"
	grantSTT   = "stt"
	grantAgent = "agent"
)

// Token verification failures.
var (
	errTokenInvalid = errors.New("invalid access token")
	errTokenExpired = errors.New("access token expired")
)

// grants is the grants claim: the capabilities a token carries. A nil field was not
// requested; it is omitted from the token like in Cartesia's examples.
type grants struct {
	TTS   *bool `json:"tts,omitempty"`
	STT   *bool `json:"stt,omitempty"`
	Agent *bool `json:"agent,omitempty"`
}

// allows reports whether the named grant is present and true.
func (g grants) allows(name string) bool {
	var v *bool
	switch name {
	case grantTTS:
		v = g.TTS
	case grantSTT:
		v = g.STT
	case grantAgent:
		v = g.Agent
	}
	return v != nil && *v
}

// claims is the JWT payload.
type claims struct {
	Grants grants `json:"grants"`
	JTI    string `json:"jti"`
	IAT    int64  `json:"iat"`
	EXP    int64  `json:"exp"`
	ISS    string `json:"iss"`
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Kid string `json:"kid"`
}

// issuer mints and verifies the emulator's access tokens.
type issuer struct {
	secret []byte
	kid    string
}

func newIssuer() *issuer {
	secret := make([]byte, 32)
	id := make([]byte, 8)
	_, _ = rand.Read(secret) // crypto/rand.Read never fails (Go 1.24+)
	_, _ = rand.Read(id)
	return &issuer{secret: secret, kid: "ssid_emu_" + hex.EncodeToString(id)}
}

// mint returns a signed token for g, valid from now for ttl.
func (i *issuer) mint(g grants, now time.Time, ttl time.Duration) (string, error) {
	header, err := json.Marshal(jwtHeader{Alg: "HS256", Kid: i.kid})
	if err != nil {
		return "", fmt.Errorf("encode token header: %w", err)
	}
	payload, err := json.Marshal(claims{
		Grants: g,
		JTI:    randomID(12),
		IAT:    now.Unix(),
		EXP:    now.Add(ttl).Unix(),
		ISS:    tokenIssuer,
	})
	if err != nil {
		return "", fmt.Errorf("encode token claims: %w", err)
	}

	signed := b64(header) + "." + b64(payload)
	return signed + "." + b64(i.sign(signed)), nil
}

// verify checks a token's signature, header and expiry at now and returns its claims.
// The payload is only parsed after the signature is known to be ours.
func (i *issuer) verify(token string, now time.Time) (*claims, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return nil, errTokenInvalid
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || !hmac.Equal(sig, i.sign(parts[0]+"."+parts[1])) {
		return nil, errTokenInvalid
	}

	var h jwtHeader
	if err := decodeSegment(parts[0], &h); err != nil || h.Alg != "HS256" || h.Kid != i.kid {
		return nil, errTokenInvalid
	}
	var c claims
	if err := decodeSegment(parts[1], &c); err != nil || c.ISS != tokenIssuer {
		return nil, errTokenInvalid
	}

	// A token is usable strictly before exp (RFC 7519 §4.1.4).
	if !now.Before(time.Unix(c.EXP, 0)) {
		return nil, errTokenExpired
	}
	return &c, nil
}

func (i *issuer) sign(signed string) []byte {
	m := hmac.New(sha256.New, i.secret)
	m.Write([]byte(signed))
	return m.Sum(nil)
}

// looksLikeJWT tells a token from an API key without trusting it: three dot-separated
// parts, the first being base64url JSON ("eyJ" is the encoding of `{"`).
func looksLikeJWT(s string) bool {
	return strings.Count(s, ".") == 2 && strings.HasPrefix(s, "eyJ")
}

func b64(b []byte) string {
	return base64.RawURLEncoding.EncodeToString(b)
}

func decodeSegment(seg string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		return err
	}
	return json.Unmarshal(raw, v)
}

// randomID returns n random letters and digits.
func randomID(n int) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	b := make([]byte, n)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	for i := range b {
		b[i] = alphabet[int(b[i])%len(alphabet)] // 256 % 62 bias is irrelevant for an id
	}
	return string(b)
}
