//go:build js && wasm

package client

import (
	"context"
	"encoding/json"
	"net/url"
	"strconv"
	"strings"
	"sync"

	"github.com/voxgate/voxgate/internal/leak"
	"github.com/voxgate/voxgate/wasm/jsx"
)

// Direct mode: when the server offers it for a grant (GET /api/info "direct"), the client
// mints that grant's tokens at POST /api/token/direct, keeps each token in the tracker's
// memory only, and calls Cartesia itself: a Bearer header on HTTP, the access_token query
// parameter on WebSockets (browsers cannot set headers on a WebSocket). The token never
// reaches JavaScript: not in an event, a state, an error, Web Storage, a cookie or the DOM,
// and it is never handed to another tab (each tab mints its own).

// Values of Options.Direct.
const (
	// DirectAuto uses direct mode for every grant the server offers it for (the default).
	DirectAuto = ""
	// DirectOff always goes through the server's proxy.
	DirectOff = "off"
)

// DirectInfo is the server's direct-mode offer: GET /api/info's "direct" object.
type DirectInfo struct {
	// Grants are the grants that may be minted for direct use.
	Grants []string `json:"grants"`

	// Upstream is the origin direct calls go to (Cartesia, or the built-in emulator).
	Upstream string `json:"upstream"`

	// CartesiaVersion is the API version direct calls send.
	CartesiaVersion string `json:"cartesia_version"`

	// MaxTTL is the longest direct token in seconds.
	MaxTTL int `json:"max_ttl"`
}

// redacted replaces a token wherever an upstream answer repeats it.
const redacted = "[REDACTED]"

// offer is what the client knows about direct mode: loaded once /api/info has answered.
// refused holds the grants the server would not mint directly for this user (403
// direct_not_allowed: for example an agent grant limited to some agent ids); they use the
// proxy for the rest of the page's life, whatever later offers say.
type offer struct {
	mu      sync.Mutex
	loaded  bool
	grants  map[string]bool
	refused map[string]bool
	http    string // upstream origin, http(s)://host[:port]
	ws      string // the same origin as ws(s)://
	ver     string
}

// loadOffer asks /api/info once (until it answers) which grants go direct. Without an
// answer every grant uses the proxy for now and the next call asks again; a token minted
// meanwhile through the proxy is replaced the first time its grant turns out to be direct.
func (c *Client) loadOffer(ctx context.Context) {
	if c.direct == DirectOff {
		return
	}
	c.offer.mu.Lock()
	loaded := c.offer.loaded
	c.offer.mu.Unlock()
	if loaded {
		return
	}

	info, err := c.Info(ctx)
	if err != nil {
		return
	}
	c.setOffer(info.Direct)
}

// setOffer records the server's offer; an offer whose upstream is not an http(s) origin
// is ignored (every grant then uses the proxy).
func (c *Client) setOffer(d *DirectInfo) {
	grants := map[string]bool{}
	var httpOrigin, wsOrigin string
	if d != nil {
		if u, err := url.Parse(d.Upstream); err == nil && u.Host != "" && u.User == nil &&
			(u.Path == "" || u.Path == "/") && u.RawQuery == "" &&
			(u.Scheme == "https" || u.Scheme == "http") {
			httpOrigin = u.Scheme + "://" + u.Host
			wsOrigin = "ws" + strings.TrimPrefix(u.Scheme, "http") + "://" + u.Host
			for _, g := range d.Grants {
				grants[g] = true
			}
		}
	}

	c.offer.mu.Lock()
	defer c.offer.mu.Unlock()
	c.offer.loaded = true
	c.offer.grants, c.offer.http, c.offer.ws = grants, httpOrigin, wsOrigin
	if d != nil {
		c.offer.ver = d.CartesiaVersion
	}
}

// isDirect reports whether grant's calls go straight to the upstream.
func (c *Client) isDirect(grant string) bool {
	if c.direct == DirectOff {
		return false
	}
	c.offer.mu.Lock()
	defer c.offer.mu.Unlock()
	return c.offer.grants[grant] && !c.offer.refused[grant]
}

// refuseDirect makes grant use the proxy from now on.
func (c *Client) refuseDirect(grant string) {
	c.offer.mu.Lock()
	defer c.offer.mu.Unlock()
	if c.offer.refused == nil {
		c.offer.refused = map[string]bool{}
	}
	c.offer.refused[grant] = true
}

// directTarget returns the upstream origins and API version for direct calls.
func (c *Client) directTarget() (httpOrigin, wsOrigin, version string) {
	c.offer.mu.Lock()
	defer c.offer.mu.Unlock()
	return c.offer.http, c.offer.ws, c.offer.ver
}

// upstreamPath is the upstream path of one of the proxy's paths (/cartesia/tts/bytes ->
// /tts/bytes): the proxy maps its routes one to one.
func upstreamPath(path string) string {
	return strings.TrimPrefix(path, proxyPrefix)
}

// proxyPrefix is where the server's proxy routes live.
const proxyPrefix = "/cartesia"

// directToken is the answer of POST /api/token/direct: the tracker's metadata plus the
// token itself.
type directToken struct {
	Grant      string  `json:"grant"`
	ExpiresIn  float64 `json:"expires_in"`
	ExpiresAt  int64   `json:"expires_at"`
	ServerTime int64   `json:"server_time"`
	Token      string  `json:"token"`
}

// doDirect sends req (whose URL is a proxy path) straight to the upstream with secret as
// the Bearer token. Upstream errors become *Error with the same codes the proxy uses; the
// token is removed from everything the upstream said before it is kept.
func (c *Client) doDirect(ctx context.Context, secret string, req jsx.Request) (*jsx.Response,
	error) {
	origin, _, version := c.directTarget()
	method, path := req.Method, upstreamPath(req.URL)
	req.URL = origin + path
	if req.Header == nil {
		req.Header = map[string]string{}
	}
	req.Header["Authorization"] = "Bearer " + secret
	if version != "" {
		req.Header["Cartesia-Version"] = version
	}
	req.Credentials = "omit"

	resp, err := jsx.Fetch(ctx, req)
	if err != nil {
		// A fetch error names the URL, never the header that carries the token.
		if cerr := ctx.Err(); cerr != nil {
			return nil, &Error{Code: CodeAborted, Message: method + " " + path + ": " + cerr.Error(),
				Err: err}
		}
		return nil, &Error{Code: CodeNetworkError, Err: err,
			Message: method + " " + origin + path + ": " + err.Error() +
				" (a direct call: the upstream may be unreachable or refuse this origin)"}
	}
	if resp.Status < 400 {
		return resp, nil
	}
	return nil, decodeUpstreamError(resp, secret)
}

// upstreamCodes are the codes the proxy answers for these upstream statuses; a direct
// call reports the same, so callers handle both modes alike (401 token_expired is retried
// once after a refresh).
var upstreamCodes = map[int]string{
	401: "token_expired",
	403: "grant_forbidden",
	429: "rate_limited",
}

// decodeUpstreamError reads Cartesia's error answer ({"error_code", "title", "message",
// "request_id"} or plain text) and releases the response.
func decodeUpstreamError(resp *jsx.Response, secret string) *Error {
	forms := leak.Forms(secret)
	defer resp.Close()

	code, ok := upstreamCodes[resp.Status]
	if !ok {
		code = CodeUpstreamError
	}
	up := &Upstream{Status: resp.Status, RequestID: resp.Header("Cartesia-Request-Id")}
	if up.RequestID == "" {
		up.RequestID = resp.Header("X-Request-Id")
	}
	raw, _ := readLimited(resp, maxErrorBody)
	var body struct {
		ErrorCode string `json:"error_code"`
		Title     string `json:"title"`
		Message   string `json:"message"`
		RequestID string `json:"request_id"`
		Error     string `json:"error"`
	}
	if json.Unmarshal(raw, &body) == nil {
		up.ErrorCode, up.Title, up.Message = body.ErrorCode, body.Title, body.Message
		if up.Message == "" {
			up.Message = body.Error
		}
		if body.RequestID != "" {
			up.RequestID = body.RequestID
		}
	} else {
		up.Message = strings.TrimSpace(string(raw))
	}
	for _, f := range []*string{&up.ErrorCode, &up.Title, &up.Message, &up.RequestID} {
		*f = scrub(*f, forms)
	}

	// The proxy's wording (token.UpstreamError), so both modes read the same.
	msg := "upstream answered " + strconv.Itoa(resp.Status)
	if up.ErrorCode != "" {
		msg += " (" + up.ErrorCode + ")"
	}
	for _, part := range []string{up.Title, up.Message} {
		if part != "" {
			msg += ": " + part
		}
	}
	return &Error{Code: code, Status: resp.Status, Message: msg,
		Upstream: up, RetryAfter: retryAfter(resp)}
}

// echoes reports whether a whole answer holds secret in any of its forms: the proxy's
// check on relayed answers (package leak), done here for the calls the proxy never sees.
// Streams make their needles once instead (see socket and TTSStream).
func echoes(data []byte, secret string) bool {
	return secret != "" && leak.In(data, leak.Needles(leak.Forms(secret)))
}

// echoError is the error a call or stream ends with when the upstream repeated its token.
func echoError(grant string) *Error {
	return &Error{Code: CodeTokenEcho, Grant: grant,
		Message: "the upstream repeated the access token in its answer; the answer was withheld"}
}

// scrub replaces every form of a secret (see leak.Forms) in s by [REDACTED].
func scrub(s string, forms []string) string {
	for _, f := range forms {
		s = strings.ReplaceAll(s, f, redacted)
	}
	return s
}

// directSocketURL is the upstream WebSocket URL of a proxy path with the token and the API
// version in the query, as Cartesia documents for browsers.
//
// Limitation: the token is in the URL, where the browser's network panel shows it to
// whoever sits at the keyboard; it never reaches JavaScript or a log of ours, and it lives
// for at most the server's direct TTL cap.
func (c *Client) directSocketURL(path, query, secret string) string {
	_, origin, version := c.directTarget()
	q := url.Values{}
	q.Set("access_token", secret)
	if version != "" {
		q.Set("cartesia_version", version)
	}
	extra := q.Encode()
	if query != "" {
		extra = query + "&" + extra
	}
	return origin + upstreamPath(path) + "?" + extra
}
