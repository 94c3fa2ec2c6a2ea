//go:build js && wasm

package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/voxgate/voxgate/wasm/jsx"
)

// Session is who is signed in: the answer of POST /api/login and GET /api/session.
type Session struct {
	// User is the user name.
	User string

	// Grants are the grants this user may mint tokens for.
	Grants []string

	// ExpiresAt is when the session ends, on the server's clock; zero when not given.
	ExpiresAt time.Time

	// Raw is the server's JSON answer as received.
	Raw json.RawMessage
}

// UnmarshalJSON reads the server's session JSON. session_expires_at may be Unix
// milliseconds or an RFC 3339 string.
func (s *Session) UnmarshalJSON(b []byte) error {
	var aux struct {
		User      string          `json:"user"`
		Grants    []string        `json:"grants"`
		ExpiresAt json.RawMessage `json:"session_expires_at"`
	}
	if err := json.Unmarshal(b, &aux); err != nil {
		return err
	}
	*s = Session{User: aux.User, Grants: aux.Grants, Raw: append(json.RawMessage(nil), b...)}

	var ms int64
	var text string
	switch {
	case len(aux.ExpiresAt) == 0 || string(aux.ExpiresAt) == "null":
	case json.Unmarshal(aux.ExpiresAt, &ms) == nil:
		s.ExpiresAt = time.UnixMilli(ms)
	case json.Unmarshal(aux.ExpiresAt, &text) == nil:
		t, err := time.Parse(time.RFC3339, text)
		if err != nil {
			return fmt.Errorf("session_expires_at: %w", err)
		}
		s.ExpiresAt = t
	default:
		return errors.New("session_expires_at: neither a number nor a string")
	}
	return nil
}

// Info is what the page needs before sign-in: the answer of GET /api/info.
type Info struct {
	// Upstream is "emulator" or "cartesia".
	Upstream string `json:"upstream"`

	// Grants are the grants the server mints.
	Grants []string `json:"grants"`

	// Direct is the server's direct-mode offer; nil when direct mode is off.
	Direct *DirectInfo `json:"direct,omitempty"`

	// Raw is the server's JSON answer as received.
	Raw json.RawMessage `json:"-"`
}

// Login signs in with a user name and password and starts a new session. Tokens of any
// previous session are forgotten, since the server binds tokens to their session.
func (c *Client) Login(ctx context.Context, username, password string) (Session, error) {
	var s Session
	in := map[string]string{"username": username, "password": password}
	if err := c.callJSON(ctx, "POST", "/api/login", in, &s); err != nil {
		return Session{}, AsError(err, "")
	}

	c.tokens.Reset()
	c.sessionStarted()
	return s, nil
}

// Logout ends the session on the server, forgets every token and emits EventSessionEnd.
func (c *Client) Logout(ctx context.Context) error {
	err := c.callJSON(ctx, "POST", "/api/logout", nil, nil)
	var e *Error
	if err != nil && !(errors.As(err, &e) && e.Code == "no_session") {
		return AsError(err, "")
	}

	c.sessionEnded("logout", true)
	return nil
}

// Session returns who is signed in; it fails with code no_session when nobody is.
func (c *Client) Session(ctx context.Context) (Session, error) {
	var s Session
	if err := c.callJSON(ctx, "GET", "/api/session", nil, &s); err != nil {
		return Session{}, AsError(err, "")
	}

	c.sessionStarted()
	return s, nil
}

// Info returns the server's public facts.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var raw json.RawMessage
	if err := c.callJSON(ctx, "GET", "/api/info", nil, &raw); err != nil {
		return Info{}, AsError(err, "")
	}

	var info Info
	if err := json.Unmarshal(raw, &info); err != nil {
		return Info{}, &Error{Code: CodeBadResponse, Status: 200,
			Message: "GET /api/info: decode answer: " + err.Error(), Err: err}
	}
	info.Raw = raw
	if c.direct != DirectOff {
		c.setOffer(info.Direct)
	}
	return info, nil
}

// TTSRequest is Cartesia's POST /tts/bytes body. TTSBytes also accepts a json.RawMessage
// (or any value that encodes to the same JSON), which is how fields this struct lacks are
// sent.
type TTSRequest struct {
	ModelID          string            `json:"model_id"`
	Transcript       string            `json:"transcript"`
	Voice            Voice             `json:"voice"`
	OutputFormat     OutputFormat      `json:"output_format"`
	Language         string            `json:"language,omitempty"`
	GenerationConfig *GenerationConfig `json:"generation_config,omitempty"`
}

// Voice selects a voice by id.
type Voice struct {
	Mode string `json:"mode"` // "id"
	ID   string `json:"id"`
}

// OutputFormat is the audio container and encoding.
type OutputFormat struct {
	Container  string `json:"container"`          // raw, wav or mp3
	Encoding   string `json:"encoding,omitempty"` // pcm_s16le, pcm_f32le, ... (raw, wav)
	SampleRate int    `json:"sample_rate"`
	BitRate    int    `json:"bit_rate,omitempty"` // mp3 only
}

// GenerationConfig tunes sonic-3 and later models.
type GenerationConfig struct {
	Volume  float64 `json:"volume,omitempty"`
	Speed   float64 `json:"speed,omitempty"`
	Emotion string  `json:"emotion,omitempty"`
}

// TTSBytes synthesizes speech and returns the whole audio file.
//
// Limitation: the audio is buffered whole before it is returned, although the server
// streams it; playback that starts on the first chunk needs a streaming variant.
//
// The tts token is checked (and refreshed when needed) first; when the server still rejects
// it (401 token_expired or no_token) the token is invalidated, refreshed and the call
// retried once. A second rejection, and any other error, is returned as an *Error.
func (c *Client) TTSBytes(ctx context.Context, req any) ([]byte, error) {
	body, err := marshal(req)
	if err != nil {
		return nil, AsError(err, GrantTTS)
	}

	return withToken(ctx, c, GrantTTS, func(secret string) ([]byte, error) {
		return c.ttsOnce(ctx, secret, body)
	})
}

// withToken runs call after checking (and when needed refreshing) grant's token. When the
// server still rejects the token (401 token_expired or no_token), the token is
// invalidated, refreshed and call retried once. A second rejection, and any other error,
// is returned as an *Error. call gets the token itself for a direct grant (it must send
// the call straight to the upstream) and "" otherwise.
func withToken[T any](ctx context.Context, c *Client, grant string,
	call func(secret string) (T, error)) (T, error) {
	var zero T
	for attempt := 1; ; attempt++ {
		secret, err := c.ensure(ctx, grant)
		if err != nil {
			return zero, AsError(err, grant)
		}

		v, err := call(secret)
		if err == nil {
			return v, nil
		}
		var e *Error
		rejected := errors.As(err, &e) && e.Status == 401 &&
			(e.Code == "token_expired" || e.Code == "no_token")
		if !rejected || attempt == 2 {
			return zero, AsError(err, grant)
		}
		c.tokens.Invalidate(grant)
	}
}

// ensure checks grant's token like tracker.Ensure and returns the token itself for a
// direct grant. A direct grant whose tracked token is a cookie token (minted before the
// client learned the grant is direct) is refreshed first.
func (c *Client) ensure(ctx context.Context, grant string) (string, error) {
	c.loadOffer(ctx)
	for range 2 {
		_, secret, err := c.tokens.EnsureSecret(ctx, grant)
		if err != nil || secret != "" || !c.isDirect(grant) {
			return secret, err
		}
		c.tokens.Invalidate(grant)
	}
	return "", &Error{Code: CodeBadResponse, Grant: grant,
		Message: "no direct token for " + grant + " after a refresh"}
}

// call sends req to the server, or straight to the upstream when secret (a direct token)
// is set.
func (c *Client) call(ctx context.Context, secret string, req jsx.Request) (*jsx.Response,
	error) {
	if secret != "" {
		return c.doDirect(ctx, secret, req)
	}
	return c.do(ctx, req)
}

func (c *Client) ttsOnce(ctx context.Context, secret string, body []byte) ([]byte, error) {
	resp, err := c.call(ctx, secret, jsx.Request{Method: "POST", URL: "/cartesia/tts/bytes",
		Header: map[string]string{"Content-Type": "application/json"}, Body: body})
	if err != nil {
		return nil, err
	}
	c.sessionStarted()

	audio, err := resp.Bytes()
	if err != nil {
		return nil, readError(ctx, "POST", "/cartesia/tts/bytes", err)
	}
	if echoes(audio, secret) {
		return nil, echoError(GrantTTS)
	}
	return audio, nil
}
