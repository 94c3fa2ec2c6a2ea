//go:build js && wasm

// Package client is voxgate's browser client for Go programs compiled to WebAssembly: it
// signs in against the voxgate server, keeps each grant's token fresh through the tracker
// before every call, and calls Cartesia through the server's same-origin proxy.
//
// It owns the HTTP and WebSocket surface of the server as seen from the page (paths, the
// X-CSRF header, JSON and multipart bodies, error decoding, the retry after a rejected
// token, the streams: TTS over SSE and WebSocket, STT over WebSocket and batch, agent
// calls). Every call and every new connection checks its grant's token first. In proxy
// mode it never sees a token or a cookie value (the browser keeps them, httpOnly); in
// direct mode (see direct.go) it holds each direct token in memory only and calls Cartesia
// itself. It never touches the DOM or exported JavaScript names; cmd/voxgate does that. Cartesia's message formats are
// package cartesia's.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/voxgate/voxgate/wasm/tracker"
)

// Grants the server knows.
const (
	GrantTTS   = "tts"
	GrantSTT   = "stt"
	GrantAgent = "agent"
)

// EventSessionEnd is delivered when the session ended: after Logout (reason "logout") or
// when any call was answered 401 no_session (reason "no_session").
const EventSessionEnd = "sessionend"

// DefaultWake is the wake detector's tick (see tracker.Options.Wake): once a second costs
// nothing noticeable and notices a sleep within a second of waking.
const DefaultWake = time.Second

// Event is a token event from the tracker (refresh, refresherror, expiring, expired) or
// EventSessionEnd. Limitation: Go programs get no "streamend" event; voxgate.js derives
// it from the sockets' close status, which Go programs read with Closed.
type Event struct {
	// Type is tracker.EventRefresh, ..., or EventSessionEnd.
	Type string

	// Grant is the grant concerned, empty for EventSessionEnd.
	Grant string

	// Reason is the refresh reason, or why the session ended.
	Reason string

	// State is the grant's state after the event.
	State tracker.State

	// Err is set for refresherror events.
	Err *Error
}

// Options configures a Client.
type Options struct {
	// BaseURL is the server's origin; empty means the page's own origin. A server on
	// another origin must list the page's origin in its CORS_ORIGINS; calls then carry
	// cookies (credentials "include").
	//
	// Limitation: the server's cookies are SameSite=Strict, so only a same-site BaseURL
	// (a sibling subdomain) ever gets the session; a cross-site one fails with no_session.
	BaseURL string

	// Margin is how long before expiry a token is refreshed; zero means the tracker's
	// default (min(30 s, lifetime/5)).
	Margin time.Duration

	// NoProactive disables refreshing ahead of time (tokens are then refreshed at use).
	NoProactive bool

	// Coordinator shares refreshes with the page's other tabs (cmd/voxgate builds one on
	// Web Locks and BroadcastChannel); nil means this client refreshes on its own.
	Coordinator tracker.Coordinator

	// Wake is the wake detector's tick; zero means DefaultWake, negative disables it.
	Wake time.Duration

	// OnEvent receives every Event, without any lock held; it should return quickly.
	OnEvent func(Event)

	// Clock replaces the real clock (tests).
	Clock tracker.Clock

	// Direct is DirectAuto (direct mode for the grants the server offers it for) or
	// DirectOff (always through the server's proxy).
	Direct string
}

// session states, for deciding when a session has ended.
const (
	sessionUnknown = iota
	sessionActive
	sessionEnded
)

// Client talks to one voxgate server. It is safe for concurrent use.
type Client struct {
	base    string
	onEvent func(Event)
	tokens  *tracker.Tracker
	direct  string
	offer   offer

	mu      sync.Mutex
	session int
}

// New returns a Client. It makes no request until a method is called.
func New(opts Options) *Client {
	c := &Client{base: strings.TrimRight(opts.BaseURL, "/"), onEvent: opts.OnEvent,
		direct: opts.Direct}
	if opts.Wake == 0 {
		opts.Wake = DefaultWake
	}
	c.tokens = tracker.New(tracker.Options{
		Refresh:     c.refresh,
		Clock:       opts.Clock,
		Margin:      opts.Margin,
		NoProactive: opts.NoProactive,
		Coordinator: opts.Coordinator,
		Local:       c.isDirect,
		Wake:        max(opts.Wake, 0),
		OnEvent:     c.trackerEvent,
	})
	return c
}

// Check re-examines every token now (see tracker.Tracker.Check): call it when the page
// becomes visible, gets focus, comes back online or is restored from the back/forward cache.
func (c *Client) Check() {
	c.tokens.Check()
}

// Tokens gives access to the per-grant token states.
func (c *Client) Tokens() Tokens {
	return Tokens{c: c}
}

// Close stops every timer; later calls fail with code "closed".
func (c *Client) Close() {
	c.tokens.Close()
}

// Tokens reads and refreshes the client's per-grant token state.
type Tokens struct {
	c *Client
}

// State returns grant's current token state. Direct is also true before the first token
// of a grant the server offers direct mode for (once the offer is known).
func (t Tokens) State(grant string) tracker.State {
	return t.c.withMode(t.c.tokens.State(grant))
}

// States returns every grant's state: tts, stt, agent, then any other grant used.
func (t Tokens) States() []tracker.State {
	states := t.c.tokens.States()
	for i := range states {
		states[i] = t.c.withMode(states[i])
	}
	return states
}

// withMode marks the state of a direct grant as direct even before its first token.
func (c *Client) withMode(st tracker.State) tracker.State {
	if !st.Valid && c.isDirect(st.Grant) {
		st.Direct = true
	}
	return st
}

// Refresh mints a new token for grant now.
func (t Tokens) Refresh(ctx context.Context, grant string) (tracker.State, error) {
	st, err := t.c.tokens.Refresh(ctx, grant)
	if err != nil {
		return st, AsError(err, grant)
	}
	return st, nil
}

// refresh is the tracker's RefreshFunc: POST /api/token, or /api/token/direct for a
// direct grant. It never retries on 401 (buglog B28): a refresh rejected for lack of a
// session means the user is signed out.
func (c *Client) refresh(ctx context.Context, grant string) (tracker.Token, error) {
	var tok tracker.Token
	path, out := "/api/token", any(&tok)
	var direct directToken
	if c.isDirect(grant) {
		path, out = "/api/token/direct", &direct
	}
	err := c.callJSON(ctx, "POST", path, map[string]string{"grant": grant}, out)
	var refused *Error
	if errors.As(err, &refused) && refused.Code == "direct_not_allowed" {
		// The deployment offers the grant directly, but not to this user (an agent grant
		// limited to some agent ids, which only the proxy enforces): the proxy it is.
		c.refuseDirect(grant)
		path, out = "/api/token", &tok
		err = c.callJSON(ctx, "POST", path, map[string]string{"grant": grant}, out)
	}
	if err == nil && path != "/api/token" {
		tok = tracker.Token{Grant: direct.Grant, ExpiresIn: direct.ExpiresIn,
			ExpiresAt: direct.ExpiresAt, ServerTime: direct.ServerTime, Secret: direct.Token}
		if tok.Secret == "" {
			err = &Error{Code: CodeBadResponse, Status: 200,
				Message: "POST " + path + ": the answer carries no token"}
		}
	}
	if err != nil {
		e := AsError(err, grant)
		if e.Status == 401 { // whatever its code: signed out, never refreshed (B28)
			c.sessionEnded("no_session", false)
		}
		return tok, &tracker.RefreshError{Grant: grant, Code: e.Code, Status: e.Status,
			Message: e.Message, RetryAfter: e.RetryAfter, Err: e}
	}

	c.sessionStarted()
	return tok, nil
}

// trackerEvent forwards a tracker event to OnEvent.
func (c *Client) trackerEvent(ev tracker.Event) {
	out := Event{Type: ev.Type, Grant: ev.Grant, Reason: ev.Reason, State: c.withMode(ev.State)}
	if ev.Err != nil {
		out.Err = AsError(ev.Err, ev.Grant)
	}
	c.emit(out)
}

func (c *Client) emit(ev Event) {
	if c.onEvent != nil {
		c.onEvent(ev)
	}
}

// sessionStarted records that the server recognised the session.
func (c *Client) sessionStarted() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.session = sessionActive
}

// sessionEnded forgets every token and emits EventSessionEnd, once per session unless
// forced (an explicit logout always reports).
func (c *Client) sessionEnded(reason string, force bool) {
	c.mu.Lock()
	was := c.session
	c.session = sessionEnded
	c.mu.Unlock()

	if was == sessionEnded && !force {
		return
	}
	c.tokens.Reset()
	c.emit(Event{Type: EventSessionEnd, Reason: reason})
}

// marshal encodes a request body; json.RawMessage and []byte holding JSON pass through
// after validation.
func marshal(v any) ([]byte, error) {
	if b, ok := v.([]byte); ok {
		v = json.RawMessage(b)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Message: "encode request: " + err.Error(),
			Err: err}
	}
	return b, nil
}
