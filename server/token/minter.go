package token

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Token lifetimes Cartesia accepts. MaxTTL is Cartesia's documented cap; MinTTL keeps a
// token alive long enough for at least one request after the round trip that minted it.
const (
	MinTTL = 2 * time.Second
	MaxTTL = 3600 * time.Second
)

// Limits on what the minter reads from upstream.
const (
	// maxMintResponse bounds the body of POST /access-token; a JWT is a few hundred bytes.
	maxMintResponse = 64 << 10
	// maxTokenLen keeps a token small enough to fit a 4096-byte cookie after sealing.
	maxTokenLen = 2800
	// defaultMintTimeout bounds one whole mint, connect to last byte.
	defaultMintTimeout = 15 * time.Second
)

// Token is one minted access token: its secret text, the single grant it carries, and a
// conservative expiry (the clock read before the request went out, plus the lifetime
// asked for; Cartesia's response carries no expiry of its own).
type Token struct {
	Value     Value
	Grant     Grant
	ExpiresAt time.Time
}

// MinterConfig configures a Minter.
type MinterConfig struct {
	// Upstream is the fixed origin, for example "https://api.cartesia.ai". No request
	// input ever changes it.
	Upstream string
	// Key is the API key sent as Authorization: Bearer on POST /access-token.
	Key APIKey
	// Version is the Cartesia-Version header.
	Version string
	// Client sends the request; nil means NewHTTPClient().
	Client *http.Client
	// Timeout bounds one whole mint; zero means 15 s.
	Timeout time.Duration
	// Now is the clock; nil means time.Now.
	Now func() time.Time
}

// Minter mints access tokens with the API key. It is safe for concurrent use.
type Minter struct {
	endpoint string
	key      APIKey
	version  string
	client   *http.Client
	timeout  time.Duration
	now      func() time.Time
}

// NewMinter checks the configuration and returns a Minter.
func NewMinter(cfg MinterConfig) (*Minter, error) {
	if cfg.Key.IsZero() {
		return nil, errors.New("token: new minter: no API key")
	}
	if cfg.Version == "" {
		return nil, errors.New("token: new minter: empty Cartesia-Version")
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("token: new minter: upstream %q is not a bare http(s) origin",
			cfg.Upstream)
	}

	m := &Minter{
		endpoint: u.Scheme + "://" + u.Host + "/access-token",
		key:      cfg.Key,
		version:  cfg.Version,
		client:   cfg.Client,
		timeout:  cfg.Timeout,
		now:      cfg.Now,
	}
	if m.client == nil {
		m.client = NewHTTPClient()
	}
	if m.timeout <= 0 {
		m.timeout = defaultMintTimeout
	}
	if m.now == nil {
		m.now = time.Now
	}
	return m, nil
}

// mintRequest is the body of POST /access-token. Grants is a map so that exactly the one
// grant asked for is present and true; Cartesia treats absent grants as not granted.
type mintRequest struct {
	Grants    map[Grant]bool `json:"grants"`
	ExpiresIn int            `json:"expires_in"`
}

// Mint asks upstream for a token carrying exactly one grant that lives ttl (whole seconds,
// MinTTL to MaxTTL). Errors are *UpstreamError (upstream answered an error status),
// *TransportError (no answer) or a plain error for a malformed answer; none contains the
// API key.
func (m *Minter) Mint(ctx context.Context, grant Grant, ttl time.Duration) (Token, error) {
	if _, err := ParseGrant(string(grant)); err != nil {
		return Token{}, err
	}
	if ttl < MinTTL || ttl > MaxTTL || ttl%time.Second != 0 {
		return Token{}, fmt.Errorf("token: mint: lifetime %v is not whole seconds in %v..%v",
			ttl, MinTTL, MaxTTL)
	}

	body, err := json.Marshal(mintRequest{
		Grants:    map[Grant]bool{grant: true},
		ExpiresIn: int(ttl / time.Second),
	})
	if err != nil {
		return Token{}, fmt.Errorf("token: mint: encode request: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, m.endpoint, bytes.NewReader(body))
	if err != nil {
		return Token{}, fmt.Errorf("token: mint: build request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+m.key.v)
	req.Header.Set("Cartesia-Version", m.version)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "voxgate")

	// Read the clock before sending: the token cannot outlive started + ttl, whatever
	// the round trip costs, so this expiry errs on the safe side.
	started := m.now()
	resp, err := m.client.Do(req)
	if err != nil {
		return Token{}, &TransportError{Timeout: IsTimeout(err), Err: m.scrub(err)}
	}
	defer resp.Body.Close()

	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxMintResponse+1))
	if err != nil {
		return Token{}, &TransportError{Timeout: IsTimeout(err), Err: m.scrub(err)}
	}
	if resp.StatusCode != http.StatusOK {
		if len(raw) > maxMintResponse {
			raw = raw[:maxMintResponse]
		}
		return Token{}, ParseUpstreamError(resp.StatusCode, resp.Header, raw, m.key.v)
	}
	if len(raw) > maxMintResponse {
		return Token{}, errors.New("token: mint: response body over 64 KiB")
	}

	var out struct {
		Token string `json:"token"`
	}
	if err := json.Unmarshal(raw, &out); err != nil {
		return Token{}, fmt.Errorf("token: mint: parse response: %w", err)
	}
	if err := checkTokenText(out.Token); err != nil {
		return Token{}, err
	}

	expires := started.Add(ttl - ExpiryResolution)
	return Token{Value: NewValue(out.Token), Grant: grant, ExpiresAt: expires}, nil
}

// ExpiryResolution is taken off every token's lifetime. Cartesia's tokens are JWTs whose
// iat and exp are whole seconds: exp is the issue second rounded down plus expires_in, so
// a token dies up to one second before "issued + expires_in". Our clock and Cartesia's
// cannot be compared finely enough to know the fraction, so the whole second is assumed
// lost; a client that counts on the full lifetime would send dead tokens near the end.
const ExpiryResolution = time.Second

// checkTokenText refuses token text that could not travel in a header or a cookie.
func checkTokenText(t string) error {
	if t == "" {
		return errors.New("token: mint: response has no token")
	}
	if len(t) > maxTokenLen {
		return fmt.Errorf("token: mint: token is %d bytes, over the %d-byte cookie budget",
			len(t), maxTokenLen)
	}
	for i := 0; i < len(t); i++ {
		if t[i] <= ' ' || t[i] > '~' {
			return errors.New("token: mint: token holds characters not allowed in a header")
		}
	}
	return nil
}

// scrub removes the key from an error's text, in case a lower layer ever quoted a
// header. Go's client does not today; this keeps it that way if that changes.
func (m *Minter) scrub(err error) error {
	if !strings.Contains(err.Error(), m.key.v) {
		return err
	}
	return errors.New(strings.ReplaceAll(err.Error(), m.key.v, redacted))
}

// NewHTTPClient returns the client used for upstream calls: bounded dial, TLS handshake
// and response-header waits, TLS 1.2 or newer, no proxy from the environment, and no
// redirects followed (a redirect would carry credentials to a place we did not choose).
func NewHTTPClient() *http.Client {
	return &http.Client{
		Transport: NewTransport(10 * time.Second),
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
}

// NewTransport returns a hardened transport that waits at most headerTimeout for
// response headers after the request is written.
func NewTransport(headerTimeout time.Duration) *http.Transport {
	dialer := &net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		TLSHandshakeTimeout:   5 * time.Second,
		ResponseHeaderTimeout: headerTimeout,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   16,
		ForceAttemptHTTP2:     true,
		TLSClientConfig:       tlsConfig(),
	}
}
