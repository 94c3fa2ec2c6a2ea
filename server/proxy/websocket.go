package proxy

import (
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// WebSocketLimits bounds the WebSocket relay. Zero fields take the defaults below.
type WebSocketLimits struct {
	// PerUserGrant caps one user's open WebSockets per grant; one more is refused with
	// 429 rate_limited before any upstream dial.
	PerUserGrant int
	// DialTimeout bounds the upstream handshake (TCP, TLS and the HTTP upgrade).
	DialTimeout time.Duration
	// ClientReadLimit and UpstreamReadLimit cap one message in each direction. A client
	// message over the limit closes the client with 1009; an upstream one closes the
	// client with 1011.
	ClientReadLimit   int64
	UpstreamReadLimit int64
	// MessageRate and MessageBurst bound the client's messages per second.
	MessageRate  float64
	MessageBurst int
	// WriteTimeout bounds one message write to either side, so a peer that stops
	// reading cannot hold the relay.
	WriteTimeout time.Duration
	// PingInterval is how often both legs are pinged; PingTimeout how long a pong may
	// take before the leg counts as dead (a half-open TCP connection never says so).
	PingInterval time.Duration
	PingTimeout  time.Duration
	// Idle closes a relay on which no message went either way for this long.
	Idle time.Duration
	// SessionCheck is how often an open relay looks its session up again in the store.
	// A session that is gone (deleted, say by a sign-out on another replica) or expired
	// ends the relay with 1008 "session ended". The same check records relayed traffic
	// as use of the session (see relay.watchSession).
	SessionCheck time.Duration
}

// Defaults for WebSocketLimits.
const (
	// DefaultWebSocketsPerUserGrant allows a page a few sockets per grant (say a TTS
	// socket and a reconnect in flight) while bounding what one account can open.
	DefaultWebSocketsPerUserGrant = 4
	// DefaultDialTimeout is generous for a TLS handshake plus upgrade.
	DefaultDialTimeout = 10 * time.Second
	// DefaultClientReadLimit fits the largest client messages: STT audio frames (100 ms
	// of 48 kHz float32 is 19 KiB) and agent media_input events (base64 of a few hundred
	// ms of audio), with room to spare.
	DefaultClientReadLimit = 256 << 10
	// DefaultUpstreamReadLimit fits TTS WebSocket chunk events: base64 audio in JSON,
	// typically tens of KiB.
	DefaultUpstreamReadLimit = 1 << 20
	// DefaultMessageRate and DefaultMessageBurst leave room for 10 ms audio frames
	// (100 a second) and bursts after a stalled tab wakes, and stop floods.
	DefaultMessageRate  = 100
	DefaultMessageBurst = 200
	// DefaultWSWriteTimeout matches the HTTP relay's write timeout.
	DefaultWSWriteTimeout = DefaultWriteTimeout
	// DefaultPingInterval and DefaultPingTimeout find a dead leg within a minute.
	DefaultPingInterval = 30 * time.Second
	DefaultPingTimeout  = 15 * time.Second
	// DefaultWSIdle is a backstop beyond every idle limit Cartesia documents (20 s STT,
	// 3 min agents, 5 min TTS), which close with their own reasons first.
	DefaultWSIdle = 10 * time.Minute
	// DefaultSessionCheck bounds how long a socket outlives its session's idle expiry, or
	// a deletion the proxy was not told of, at one store lookup per socket per check.
	// The absolute deadline needs no lookup: it is known when the socket opens.
	DefaultSessionCheck = 30 * time.Second
)

// retryAfterCap is the Retry-After sent with a refused socket: the cap frees a slot only
// when one of the user's sockets closes, which the server cannot predict; a few seconds
// keeps a retrying page from hammering.
const retryAfterCap = "5"

func (l WebSocketLimits) withDefaults() WebSocketLimits {
	orDefault(&l.PerUserGrant, DefaultWebSocketsPerUserGrant)
	orDefault(&l.ClientReadLimit, DefaultClientReadLimit)
	orDefault(&l.UpstreamReadLimit, DefaultUpstreamReadLimit)
	orDefault(&l.MessageRate, DefaultMessageRate)
	orDefault(&l.MessageBurst, DefaultMessageBurst)
	orDefault(&l.DialTimeout, DefaultDialTimeout)
	orDefault(&l.WriteTimeout, DefaultWSWriteTimeout)
	orDefault(&l.PingInterval, DefaultPingInterval)
	orDefault(&l.PingTimeout, DefaultPingTimeout)
	orDefault(&l.Idle, DefaultWSIdle)
	orDefault(&l.SessionCheck, DefaultSessionCheck)
	return l
}

// orDefault replaces a zero or negative setting with its default.
func orDefault[T int | int64 | float64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// serveWebSocket checks an upgrade, dials upstream and relays. Every check happens before
// the dial, and the dial before the browser's upgrade is accepted, so that every refusal,
// upstream's included, reaches the browser as a JSON error with its status rather than
// as a socket that opens and dies.
func (c *call) serveWebSocket(w http.ResponseWriter, r *http.Request) {
	if !c.checkOrigin(w, r) {
		return
	}

	sess, tok, ok := c.authorize(w, r)
	if !ok {
		return
	}

	if !c.checkUpgrade(w, r) {
		return
	}

	path, ok := c.upstreamPath(w, r, sess)
	if !ok {
		return
	}
	query, ok := c.upstreamQuery(w, r)
	if !ok {
		return
	}

	release, ok := c.takeSlot(w, r, c.p.streams.slots, sess.User, "ws_concurrency_cap",
		fmt.Sprintf("too many open %s WebSockets; close one first", c.rt.Grant))
	if !ok {
		return
	}
	defer release()

	up, ok := c.dial(w, r, tok, path, query)
	if !ok {
		return
	}

	// The socket outlives this request: lift any read deadline a request-body limit in
	// front of the proxy set, or the hijacked connection would be cut when it passes.
	_ = http.NewResponseController(w).SetReadDeadline(time.Time{})
	client, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		OriginPatterns:  c.p.originPatterns,
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		// checkUpgrade and checkOrigin admit only what Accept accepts, so this is a
		// connection that cannot be hijacked; Accept has answered.
		c.status, c.note = http.StatusInternalServerError, "accept_failed"
		_ = up.Close(websocket.StatusGoingAway, "client handshake failed")
		return
	}
	c.status = http.StatusSwitchingProtocols

	c.relay(sess, client, up)
}

// checkOrigin admits an upgrade only from the page's own origin or one of the extra
// origins: the Origin header must be present, single and equal to one of them byte for
// byte, and Fetch Metadata, when the browser sends it, must be single and say websocket
// and same-origin (same-site too for an extra origin, a sibling subdomain).
// coder/websocket's own check would admit a missing Origin and any scheme or port on
// the right host; this one runs first.
func (c *call) checkOrigin(w http.ResponseWriter, r *http.Request) bool {
	check := ""
	origins := r.Header.Values("Origin")
	own := len(origins) == 1 && c.p.cfg.Origin != "" && origins[0] == c.p.cfg.Origin
	extra := len(origins) == 1 && c.p.extraOrigins[origins[0]]
	site := r.Header.Get("Sec-Fetch-Site")
	mode := r.Header.Values("Sec-Fetch-Mode")
	switch {
	case len(origins) == 0:
		check = "origin_missing"
	case len(r.Header.Values("Sec-Fetch-Site")) > 1 || len(mode) > 1:
		// Browsers send each Fetch Metadata header once; with two copies, a check
		// reading the first could pass what a reader of the other would refuse.
		check = "repeated_header"
	case !own && !extra:
		check = "origin_mismatch"
	case site != "" && site != "same-origin" && !(extra && site == "same-site"):
		check = "sec_fetch_site"
	case len(mode) == 1 && mode[0] != "websocket":
		check = "sec_fetch_mode"
	}
	if check == "" {
		return true
	}

	c.p.cfg.Logger.Warn("security_rejected", "reason", "ws_origin_rejected", "check", check,
		"route", r.URL.Path, "remote", r.RemoteAddr)
	c.fail(w, http.StatusForbidden, "csrf_rejected",
		"WebSocket upgrades are accepted only from this site's own pages")
	return false
}

// checkUpgrade answers a request that is not a well-formed WebSocket upgrade, in our JSON
// shape, before Accept would answer it in plain text.
func (c *call) checkUpgrade(w http.ResponseWriter, r *http.Request) bool {
	if !r.ProtoAtLeast(1, 1) || !headerHasToken(r.Header, "Connection", "upgrade") ||
		!headerHasToken(r.Header, "Upgrade", "websocket") {
		w.Header().Set("Upgrade", "websocket")
		c.fail(w, http.StatusUpgradeRequired, "upgrade_required",
			"this route is a WebSocket; open it with new WebSocket(url)")
		return false
	}
	// A handshake is a GET without a body; one announcing a body is malformed, and its
	// body would sit on the connection about to become the socket.
	keys := r.Header.Values("Sec-WebSocket-Key")
	if r.Header.Get("Sec-WebSocket-Version") != "13" || len(keys) != 1 ||
		!validKey(keys[0]) || r.ContentLength != 0 {
		w.Header().Set("Sec-WebSocket-Version", "13")
		c.fail(w, http.StatusBadRequest, "bad_request", "malformed WebSocket handshake")
		return false
	}
	return true
}

// validKey reports whether a Sec-WebSocket-Key is 16 bytes in base64 (RFC 6455 4.1).
func validKey(k string) bool {
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(k))
	return err == nil && len(b) == 16
}

// headerHasToken reports whether a comma-separated header contains token, ignoring case.
func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// upstreamPath is the route's upstream path with its agent id, if any, checked: first its
// form, then the session's agent list from the users file. Both refusals happen before
// any dial, so a forbidden agent never sees a handshake.
func (c *call) upstreamPath(w http.ResponseWriter, r *http.Request,
	sess session.Session) (string, bool) {
	wild := "{" + agentWildcard + "}"
	if !strings.Contains(c.rt.Upstream, wild) {
		return c.rt.Upstream, true
	}
	id := r.PathValue(agentWildcard)
	if !AgentID.MatchString(id) {
		c.fail(w, http.StatusBadRequest, "bad_request",
			"an agent id is 1 to 128 letters, digits, '_' or '-'")
		return "", false
	}

	if !sess.AllowsAgent(id) {
		// The id matched AgentID, so it is safe to log; it says which agent was probed.
		c.p.cfg.Logger.Warn("security_rejected", "reason", "agent_forbidden",
			"route", r.URL.Path, "remote", r.RemoteAddr, "user", sess.User,
			"session", session.Fingerprint(sess.ID), "agent", id)
		c.fail(w, http.StatusForbidden, "grant_forbidden",
			"your account may not call this agent")
		return "", false
	}
	return strings.Replace(c.rt.Upstream, wild, id, 1), true
}

// dial opens the upstream WebSocket with the token in the Authorization header (never in
// the URL, where it could be logged) and the Cartesia-Version header. A refusal is
// answered to the browser as a JSON error; the upstream URL and the dial error, which
// contains it, are never logged.
func (c *call) dial(w http.ResponseWriter, r *http.Request, tok token.Token, path,
	query string) (*websocket.Conn, bool) {
	target := *c.p.upstream
	target.Path, target.RawQuery = path, query

	ctx, cancel := context.WithTimeout(r.Context(), c.p.cfg.WebSocket.DialTimeout)
	defer cancel() // the connection does not keep the dial context
	up, resp, err := websocket.Dial(ctx, target.String(), &websocket.DialOptions{
		HTTPClient: c.p.cfg.Client,
		HTTPHeader: http.Header{
			"Authorization":    {"Bearer " + tok.Value.Reveal()},
			"Cartesia-Version": {c.p.cfg.Version},
			"User-Agent":       {"voxgate"},
		},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err == nil {
		id := resp.Header.Get("Cartesia-Request-Id")
		if c.guard.found([]byte(id)) {
			_ = up.CloseNow()
			c.echoBlocked(c.route, "header")
			c.fail(w, http.StatusBadGateway, "upstream_error",
				"the upstream's answer was withheld: it contained this call's credential")
			return nil, false
		}
		if id != "" {
			w.Header().Set("Cartesia-Request-Id", id)
		}
		up.SetReadLimit(c.p.cfg.WebSocket.UpstreamReadLimit)
		return up, true
	}

	switch {
	case resp != nil && resp.StatusCode != http.StatusSwitchingProtocols:
		c.note = "upstream_refused"
		c.relayRefusal(w, resp)
	case resp != nil:
		c.note = "upstream_bad_handshake"
		c.fail(w, http.StatusBadGateway, "upstream_error",
			"the upstream answered the WebSocket handshake wrongly")
	default:
		c.unreachable(w, r, err)
	}
	return nil, false
}

// relayRefusal answers an upstream handshake refusal: 401, 403 and 429 keep their status
// and get the codes the client acts on (mint again, give up, wait); anything else is a
// 502 upstream_error. Upstream's words go in the structured upstream object.
func (c *call) relayRefusal(w http.ResponseWriter, resp *http.Response) {
	var raw []byte
	if resp.Body != nil {
		raw, _ = io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	}
	ue := token.ParseUpstreamError(resp.StatusCode, resp.Header, raw, c.secret)

	status, code := http.StatusBadGateway, "upstream_error"
	if known, ok := upstreamCodes[resp.StatusCode]; ok {
		status, code = resp.StatusCode, known
	}
	if ra := token.CapRetryAfter(ue.RetryAfter, c.p.cfg.Now()); status ==
		http.StatusTooManyRequests && ra != "" {
		w.Header().Set("Retry-After", ra)
	}

	c.status = status
	reply.ErrorDetail(w, status, reply.Detail{Code: code,
		Message: "the upstream refused the WebSocket: " + ue.Error(), Upstream: ue.Reply()})
}

// relay runs the two connections as a pair until either ends, files the relay under the
// session so that sign-out can end it, has it watch the session for expiry, and records
// how it ended.
func (c *call) relay(sess session.Session, client, up *websocket.Conn) {
	client.SetReadLimit(c.p.cfg.WebSocket.ClientReadLimit)
	rl := newRelay(c.p, client, up, c.secret)
	rl.watch(sess)

	c.p.streams.track(sess.ID, rl)
	defer c.p.streams.untrack(sess.ID, rl)

	// A sign-out between the session check and track would have missed this relay;
	// look again now that EndSession can find it.
	_, err := c.p.cfg.Sessions.Get(sess.ID)
	if e, ended := sessionEnding(err); ended {
		rl.stop(e)
	}

	end := rl.run()
	c.closeClient, c.closeUpstream = end.client.logCode(), end.upstream.logCode()
	c.bytesUp, c.bytesDown = rl.bytesUp.Load(), rl.bytesDown.Load()
	if end.echo != "" {
		c.echoBlocked(c.route, end.echo)
	}
	c.note = end.note
}

// matchLiteral escapes an origin for coder/websocket's path.Match patterns, so that an
// IPv6 host's brackets are matched literally.
func matchLiteral(s string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(`*?[]\`, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}
