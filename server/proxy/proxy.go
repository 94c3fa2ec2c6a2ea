// Package proxy forwards the page's same-origin /cartesia/... calls to the one fixed
// upstream, paying with the caller's own access token.
//
// Each call needs a live session and that grant's sealed token cookie; the proxy opens the
// cookie, sends Authorization: Bearer <token> upstream and relays the answer as it
// arrives: bodies as they are read, server-sent events one event at a time, uploads as
// they are received, and WebSockets message by message on two connections (the browser's,
// accepted here, and one dialled upstream). Request and response headers and query
// parameters are copied by allowlist, and nothing the client sends can choose the upstream
// host or path. It keeps a registry of open WebSockets per session so that signing out
// ends them. The package never sees the API key and never mints tokens.
package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/url"
	"sync/atomic"
	"time"

	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// Defaults for Config's zero values.
const (
	// DefaultHeaderTimeout bounds the wait for upstream response headers; synthesis
	// starts streaming well within it.
	DefaultHeaderTimeout = 30 * time.Second
	// DefaultStreamIdle aborts a relayed body when upstream sends nothing for this long.
	DefaultStreamIdle = 30 * time.Second
	// DefaultWriteTimeout bounds each write to a client that has stopped reading.
	DefaultWriteTimeout = 30 * time.Second
	// DefaultBodyTimeout bounds reading a request body, so a client trickling bytes
	// cannot hold a handler open. For uploads it bounds each pause between reads.
	DefaultBodyTimeout = 10 * time.Second
	// DefaultUploadTimeout bounds a whole upload: 25 MiB at 1 Mbit/s takes under 4
	// minutes.
	DefaultUploadTimeout = 5 * time.Minute
	// DefaultHTTPPerUserGrant leaves a page room for a few overlapping syntheses and an
	// upload or two, and bounds what one account can keep upstream at once.
	DefaultHTTPPerUserGrant = 8
)

// maxErrorBody caps how much of an upstream error body is read before answering.
const maxErrorBody = 64 << 10

// copyBuffer is the relay's read size; each read is flushed to the client at once.
const copyBuffer = 32 << 10

// requestHeaders are the only client headers forwarded upstream. Credentials (Cookie,
// Authorization, X-API-Key), forwarding headers and everything else stay behind.
var requestHeaders = []string{"Content-Type", "Accept"}

// responseHeaders are the only upstream headers relayed to the client as they are.
// Set-Cookie, CORS, Location, Server and the rest stay behind; Content-Type and
// Retry-After are relayed only after checking (see startResponse).
var responseHeaders = []string{"Cartesia-Request-Id", "Cartesia-File-Id"}

// Config configures a Proxy.
type Config struct {
	// Upstream is the fixed origin, for example "https://api.cartesia.ai".
	Upstream string
	// Version is the Cartesia-Version header sent upstream.
	Version string
	// Origin is the exact origin the page is served from. A WebSocket upgrade is accepted
	// only when its Origin header equals it byte for byte: browsers cannot add X-CSRF to
	// an upgrade, so the Origin is what stops another site's page from opening a socket
	// with our cookies (cross-site WebSocket hijacking). Empty refuses every upgrade.
	Origin string
	// Client sends upstream requests and WebSocket handshakes; nil means one with
	// DefaultHeaderTimeout. It must not follow redirects.
	Client *http.Client
	// Sealer opens token cookies; Sessions resolves the session cookie.
	Sealer   *seal.Sealer
	Sessions session.Store
	// Logger receives one `proxy` event per call and `security_rejected` events.
	Logger *slog.Logger
	// Now is the clock for token expiry; nil means time.Now.
	Now func() time.Time
	// StreamIdle and WriteTimeout bound a relayed stream, BodyTimeout the reading of a
	// request body (and each pause in an upload), UploadTimeout a whole upload; zero
	// means the defaults.
	StreamIdle    time.Duration
	WriteTimeout  time.Duration
	BodyTimeout   time.Duration
	UploadTimeout time.Duration

	// WebSocket holds the WebSocket relay's limits; zero fields take the defaults.
	WebSocket WebSocketLimits
	// HTTPPerUserGrant caps one user's proxied HTTP calls in flight per grant (bodies,
	// event streams and uploads); one more is refused with 429 rate_limited before
	// anything reaches upstream. Zero means DefaultHTTPPerUserGrant.
	HTTPPerUserGrant int
}

// Proxy relays the routes in Routes. It is safe for concurrent use.
//
// Limitation: the session and token are checked when a call starts. An expiring token
// cuts nothing (Cartesia, too, checks tokens when a connection opens). Signing out ends
// the session's WebSockets (see EndSession) but not an HTTP response that is already
// streaming; that ends when upstream finishes or goes quiet for StreamIdle. A session
// that times out server-side (idle or absolute) does not end its open WebSockets either:
// nothing signs out, so they run until either side closes or the relay's idle limit.
type Proxy struct {
	upstream *url.URL
	cfg      Config
	streams  *streams
	// calls counts HTTP calls in flight per user and grant, for HTTPPerUserGrant.
	calls *slots
	// originPatterns is Origin for coder/websocket's own origin check, a second layer
	// behind ours.
	originPatterns []string
}

// New checks the configuration and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	u, err := url.Parse(cfg.Upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || (u.Path != "" && u.Path != "/") {
		return nil, fmt.Errorf("proxy: upstream %q is not a bare http(s) origin", cfg.Upstream)
	}
	if cfg.Version == "" || cfg.Sealer == nil || cfg.Sessions == nil {
		return nil, errors.New("proxy: Version, Sealer and Sessions are required")
	}
	if cfg.Client == nil {
		cfg.Client = &http.Client{
			Transport: token.NewTransport(DefaultHeaderTimeout),
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	orDefault(&cfg.StreamIdle, DefaultStreamIdle)
	orDefault(&cfg.WriteTimeout, DefaultWriteTimeout)
	orDefault(&cfg.BodyTimeout, DefaultBodyTimeout)
	orDefault(&cfg.UploadTimeout, DefaultUploadTimeout)
	cfg.WebSocket = cfg.WebSocket.withDefaults()

	if cfg.HTTPPerUserGrant <= 0 {
		cfg.HTTPPerUserGrant = DefaultHTTPPerUserGrant
	}

	p := &Proxy{upstream: &url.URL{Scheme: u.Scheme, Host: u.Host}, cfg: cfg,
		streams: newStreams(cfg.WebSocket.PerUserGrant),
		calls:   newSlots(cfg.HTTPPerUserGrant)}
	if cfg.Origin != "" {
		p.originPatterns = []string{matchLiteral(cfg.Origin)}
	}
	return p, nil
}

// Handler serves one route. The caller registers it under its own prefix and method.
//
// Requests that are refused before their body is read leave that body to net/http,
// which waits for it without a deadline; mount the handler behind a per-request body
// deadline (package api does) so that a body that never comes cannot hold a connection.
func (p *Proxy) Handler(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{p: p, rt: rt, start: time.Now(), status: http.StatusOK}
		defer c.log(r)
		if rt.Kind == WebSocket {
			c.serveWebSocket(w, r)
			return
		}
		c.serve(w, r)
	})
}

// call is the state of one relayed request, for its log event.
type call struct {
	p      *Proxy
	rt     Route
	start  time.Time
	user   string
	status int
	// bytesUp counts request bytes sent upstream (uploads and WebSocket messages);
	// bytesDown counts response bytes relayed to the client.
	bytesUp   int64
	bytesDown int64
	note      string
	// closeClient and closeUpstream are the close codes a WebSocket relay ended with on
	// each leg (1006 when a leg was dropped without a close handshake).
	closeClient   int
	closeUpstream int
	// secret is the access token the call sent upstream, redacted from anything
	// upstream says back.
	secret string
}

// fail answers one of our JSON errors and remembers the status for the log.
func (c *call) fail(w http.ResponseWriter, status int, code, msg string) {
	c.status = status
	reply.Error(w, status, code, msg)
}

// log writes the one `proxy` event of the call. Path only; never the query or headers.
func (c *call) log(r *http.Request) {
	attrs := []any{
		"route", r.URL.Path, "grant", string(c.rt.Grant), "user", c.user,
		"status", c.status, "dur_ms", time.Since(c.start).Milliseconds(),
		"bytes_up", c.bytesUp, "bytes_down", c.bytesDown,
	}
	if c.closeClient != 0 || c.closeUpstream != 0 {
		attrs = append(attrs, "close_client", c.closeClient, "close_upstream", c.closeUpstream)
	}
	if c.note != "" {
		attrs = append(attrs, "note", c.note)
	}
	c.p.cfg.Logger.Info("proxy", attrs...)
}

// takeSlot reserves one of the user's in-flight slots for the route's grant in s, or
// answers 429 rate_limited with Retry-After and logs the refusal with reason.
func (c *call) takeSlot(w http.ResponseWriter, r *http.Request, s *slots, user, reason,
	msg string) (release func(), ok bool) {
	release, ok = s.acquire(user, c.rt.Grant)
	if !ok {
		c.p.cfg.Logger.Warn("security_rejected", "reason", reason,
			"route", r.URL.Path, "user", user, "grant", string(c.rt.Grant))
		w.Header().Set("Retry-After", retryAfterCap)
		c.fail(w, http.StatusTooManyRequests, "rate_limited", msg)
	}
	return release, ok
}

func (c *call) serve(w http.ResponseWriter, r *http.Request) {
	sess, tok, ok := c.authorize(w, r)
	if !ok {
		return
	}

	release, ok := c.takeSlot(w, r, c.p.calls, sess.User, "http_concurrency_cap",
		fmt.Sprintf("too many %s calls in flight; wait for one to finish", c.rt.Grant))
	if !ok {
		return
	}
	defer release()

	query, ok := c.upstreamQuery(w, r)
	if !ok {
		return
	}

	var body io.Reader
	var upload *uploadBody
	size := int64(-1)
	if c.rt.Kind == Upload {
		if upload, ok = c.openUpload(w, r); !ok {
			return
		}
		defer upload.detach()
		body, size = upload, r.ContentLength
	} else {
		raw, ok := c.readBody(w, r)
		if !ok {
			return
		}
		body, size = bytes.NewReader(raw), int64(len(raw))
	}

	resp, ok := c.send(w, r, tok, query, body, size, upload)
	if !ok {
		return
	}
	defer resp.Body.Close()
	c.bytesUp = size
	if upload != nil {
		c.bytesUp = upload.count()
		if !upload.complete.Load() {
			// Upstream answered before reading the whole upload; the rest of it is still
			// on the client connection, which cannot carry another request.
			w.Header().Set("Connection", "close")
		}
	}

	switch {
	case resp.StatusCode >= 400:
		c.relayError(w, resp)
	case c.rt.Kind == Events:
		c.relayEvents(w, r, resp)
	default:
		c.relayStream(w, r, resp)
	}
}

// authorize resolves the session and opens the grant's token cookie.
func (c *call) authorize(w http.ResponseWriter, r *http.Request) (session.Session,
	token.Token, bool) {
	sess, err := session.FromRequest(c.p.cfg.Sessions, r)
	if err != nil {
		msg := "sign in first"
		if errors.Is(err, session.ErrExpired) {
			msg = "the session has expired; sign in again"
		}
		c.fail(w, http.StatusUnauthorized, "no_session", msg)
		return session.Session{}, token.Token{}, false
	}
	c.user = sess.User

	if !sess.Allows(c.rt.Grant) {
		c.fail(w, http.StatusForbidden, "grant_forbidden",
			fmt.Sprintf("your account may not use the %s grant", c.rt.Grant))
		return session.Session{}, token.Token{}, false
	}

	cookie, err := r.Cookie(seal.CookieName(c.rt.Grant))
	if err != nil || cookie.Value == "" {
		c.fail(w, http.StatusUnauthorized, "no_token",
			fmt.Sprintf("no %s token; request one from /api/token", c.rt.Grant))
		return session.Session{}, token.Token{}, false
	}

	tok, err := c.p.cfg.Sealer.Open(cookie.Value, sess.ID, c.rt.Grant)
	if err != nil {
		// A cookie that is present but does not open was altered, or belongs to another
		// session or grant: worth a security event, with the reason and never the value.
		c.p.cfg.Logger.Warn("security_rejected", "reason", "token_cookie_invalid",
			"detail", err.Error(), "route", r.URL.Path, "remote", r.RemoteAddr,
			"user", sess.User, "session", session.Fingerprint(sess.ID))
		c.fail(w, http.StatusUnauthorized, "no_token",
			fmt.Sprintf("the %s token cookie is not valid; request a new one", c.rt.Grant))
		return session.Session{}, token.Token{}, false
	}

	if !c.p.cfg.Now().Before(tok.ExpiresAt) {
		c.fail(w, http.StatusUnauthorized, "token_expired",
			fmt.Sprintf("the %s token has expired", c.rt.Grant))
		return session.Session{}, token.Token{}, false
	}
	c.secret = tok.Value.Reveal()
	return sess, tok, true
}

// readBody checks the media type and reads the whole (small, capped) body, so that an
// oversize request is refused before anything reaches upstream.
func (c *call) readBody(w http.ResponseWriter, r *http.Request) ([]byte, bool) {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "application/json" {
		c.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			"the request body must be application/json")
		return nil, false
	}

	body, err := ReadBody(w, r, c.rt.BodyLimit, c.p.cfg.BodyTimeout)
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		c.fail(w, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the request body is over %d bytes", c.rt.BodyLimit))
		return nil, false
	case token.IsTimeout(err):
		c.fail(w, http.StatusRequestTimeout, "request_timeout",
			"the request body did not arrive in time")
		return nil, false
	case err != nil:
		c.fail(w, http.StatusBadRequest, "bad_request", "could not read the request body")
		return nil, false
	}
	return body, true
}

// send builds the upstream request from the allowlists and sends it. size is the body's
// length, or -1 when unknown (a chunked upload). upload, when not nil, is the streamed
// body, whose own failure (too large, too slow) outranks the transport error it causes.
func (c *call) send(w http.ResponseWriter, r *http.Request, tok token.Token, query string,
	body io.Reader, size int64, upload *uploadBody) (*http.Response, bool) {
	target := *c.p.upstream
	target.Path = c.rt.Upstream
	target.RawQuery = query

	out, err := http.NewRequestWithContext(r.Context(), c.rt.Method, target.String(), body)
	if err != nil {
		c.fail(w, http.StatusInternalServerError, "internal", "could not build the request")
		return nil, false
	}
	out.ContentLength = size
	if size == 0 {
		out.Body = http.NoBody
	}
	for _, h := range requestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			out.Header[h] = append([]string(nil), v...)
		}
	}
	out.Header.Set("Authorization", "Bearer "+tok.Value.Reveal())
	out.Header.Set("Cartesia-Version", c.p.cfg.Version)
	out.Header.Set("User-Agent", "voxgate")

	resp, err := c.p.cfg.Client.Do(out)
	if err == nil {
		return resp, true
	}
	if upload != nil && c.uploadFailed(w, upload) {
		return nil, false
	}

	switch {
	case r.Context().Err() != nil:
		// The browser went away; nobody is left to answer.
		c.status, c.note = 499, "client_closed"
	case token.IsTimeout(err):
		c.note = "upstream_timeout"
		c.fail(w, http.StatusGatewayTimeout, "upstream_timeout",
			"the upstream did not answer in time")
	default:
		c.note = "upstream_unavailable"
		c.fail(w, http.StatusBadGateway, "upstream_unavailable", "the upstream is unreachable")
	}
	return nil, false
}

// upstreamCodes maps upstream error statuses to our codes; anything else is
// upstream_error. A 401 upstream means the token was refused, which the client fixes the
// same way as an expired one: mint again and retry once.
var upstreamCodes = map[int]string{
	http.StatusUnauthorized:    "token_expired",
	http.StatusForbidden:       "grant_forbidden",
	http.StatusTooManyRequests: "rate_limited",
}

// relayError answers an upstream error in our shape, keeping the status.
func (c *call) relayError(w http.ResponseWriter, resp *http.Response) {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	ue := token.ParseUpstreamError(resp.StatusCode, resp.Header, raw, c.secret)

	code, ok := upstreamCodes[resp.StatusCode]
	if !ok {
		code = "upstream_error"
	}
	msg := ue.Error()
	if ue.RetryAfter != "" {
		w.Header().Set("Retry-After", ue.RetryAfter)
	}

	c.status = resp.StatusCode
	reply.ErrorDetail(w, resp.StatusCode, reply.Detail{Code: code, Message: msg,
		Upstream: ue.Reply()})
}

// errStreamIdle cancels an upstream body that has gone quiet.
var errStreamIdle = errors.New("proxy: upstream stream idle")

// downstream is the client side of a relayed response: the writer, its controller for
// flushes and deadlines, and the idle timer that closes a quiet upstream body.
type downstream struct {
	c         *call
	w         http.ResponseWriter
	rc        *http.ResponseController
	idle      *time.Timer
	idleFired atomic.Bool
}

// startResponse copies the allowlisted headers and the status, flushes them, and arms
// the idle timer, which cancels the upstream read when nothing arrives for StreamIdle.
// The caller must call stop.
//
// The Content-Type is upstream's only when the route may answer that type (see
// Route.Types), else application/octet-stream: a success answered as, say, text/html
// would otherwise be a page of our origin. Retry-After passes only in a valid form.
func (c *call) startResponse(w http.ResponseWriter, resp *http.Response) *downstream {
	for _, h := range responseHeaders {
		if v := resp.Header.Values(h); len(v) > 0 {
			w.Header()[http.CanonicalHeaderKey(h)] = append([]string(nil), v...)
		}
	}
	w.Header().Set("Content-Type", c.rt.responseType(resp.Header.Values("Content-Type")))
	if ra := token.CleanRetryAfter(resp.Header.Get("Retry-After")); ra != "" &&
		len(resp.Header.Values("Retry-After")) == 1 {
		w.Header().Set("Retry-After", ra)
	}
	c.status = resp.StatusCode
	w.WriteHeader(resp.StatusCode)

	d := &downstream{c: c, w: w, rc: http.NewResponseController(w)}
	_ = d.rc.Flush()
	d.idle = time.AfterFunc(c.p.cfg.StreamIdle, func() {
		d.idleFired.Store(true)
		_ = resp.Body.Close()
	})
	return d
}

func (d *downstream) stop() { d.idle.Stop() }

// upstreamRead notes that bytes arrived from upstream.
func (d *downstream) upstreamRead() { d.idle.Reset(d.c.p.cfg.StreamIdle) }

// send writes p to the client within WriteTimeout and flushes it.
func (d *downstream) send(p []byte) bool {
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.c.p.cfg.WriteTimeout))
	if _, err := d.w.Write(p); err != nil {
		d.c.note = "client_write_failed"
		return false
	}
	d.c.bytesDown += int64(len(p))
	_ = d.rc.Flush()
	return true
}

// abort ends a response whose status line is already sent after an upstream read error.
// It cannot be reported as JSON any more; the handler aborts so the client sees a
// truncated response rather than a clean end.
func (d *downstream) abort(r *http.Request) {
	if r.Context().Err() == nil {
		d.c.note = "upstream_read_failed"
	}
	if d.idleFired.Load() {
		d.c.note = errStreamIdle.Error()
	}
	// The deferred log in Handler still runs while this unwinds.
	panic(http.ErrAbortHandler)
}

// relayStream copies allowlisted headers and then the body, flushing after every read so
// audio reaches the browser as it is produced.
func (c *call) relayStream(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	d := c.startResponse(w, resp)
	defer d.stop()

	buf := make([]byte, copyBuffer)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			d.upstreamRead()
			if !d.send(buf[:n]) {
				return
			}
		}
		if rerr == io.EOF {
			return
		}
		if rerr != nil {
			d.abort(r)
		}
	}
}

// ReadBody reads at most limit bytes of r's body within timeout. Errors are
// *http.MaxBytesError for an oversize body and a timeout error (see token.IsTimeout) for
// a slow one.
//
// After a complete body the read deadline is lifted: net/http keeps reading the
// connection in the background to notice a client hanging up, and a deadline left behind
// would cancel a long response half-way. After a failed read the connection is marked for
// closing instead, so the server does not wait for the rest of a body that is not coming.
func ReadBody(w http.ResponseWriter, r *http.Request, limit int64,
	timeout time.Duration) ([]byte, error) {
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout)) // unsupported on recorders; fine

	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, limit))
	if err != nil {
		w.Header().Set("Connection", "close")
		return nil, err
	}
	_ = rc.SetReadDeadline(time.Time{})
	return body, nil
}
