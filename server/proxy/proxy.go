// Package proxy forwards the page's same-origin /cartesia/... calls to the one fixed
// upstream, paying with the caller's own access token.
//
// Each call needs a live session and that grant's sealed token cookie; the proxy opens the
// cookie, sends Authorization: Bearer <token> upstream and relays the answer as it
// arrives: bodies as they are read, server-sent events one event at a time, and
// WebSockets message by message on two connections (the browser's, accepted here, and
// one dialled upstream). Uploads are the exception: each is received whole and checked
// (size, multipart structure, field allowlist) before upstream sees a byte. Request and
// response headers and query parameters are copied by allowlist, and nothing the client
// sends can choose the upstream host or path. Nothing upstream sends that contains the
// call's own token reaches the browser (see echoGuard). It keeps a registry of open
// WebSockets per session so that signing out ends them, and each socket watches its
// session so that a timeout ends it too. The package never sees the API key and never
// mints tokens.
package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"mime"
	"net/http"
	"net/url"
	"os"
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
	// DefaultUploadMinRate and DefaultUploadRateWindow: after its first 10 s, and in
	// every 10 s after that, an upload must bring at least 32 KiB/s (256 kbit/s, far
	// below any link that uploads 25 MiB within DefaultUploadTimeout). It ends uploads
	// that stall or crawl, and so bounds how long a trickle of less than that holds its
	// spool.
	//
	// Limitation: it does not stop a client that sends most of a body at once and then
	// 32 KiB/s or more from holding its spool for the whole DefaultUploadTimeout (about
	// 15 MiB at once, then 40 KiB/s for 300 s). Each account then parks up to
	// SpoolPerUser (two uploads, 51 MiB) for five minutes, so five to seven accounts fill
	// the default SpoolTotal (256 MiB) and every other upload is refused 503 until theirs
	// end. SpoolTotal over SpoolPerUser is how many accounts that takes; size them for
	// the accounts you trust not to collude.
	DefaultUploadMinRate    = 32 << 10
	DefaultUploadRateWindow = 10 * time.Second
	// DefaultHTTPPerUserGrant leaves a page room for a few overlapping syntheses and an
	// upload or two, and bounds what one account can keep upstream at once.
	DefaultHTTPPerUserGrant = 8
	// DefaultSpoolPerUser lets one user hold two full-size uploads at once (plus the few
	// KiB a re-encoded form adds): the HTTP cap alone would let one account park
	// 8 x 25 MiB on the server's disk.
	DefaultSpoolPerUser = 2*UploadLimit + 1<<20
	// DefaultSpoolTotal bounds what all uploads in flight may spool together, memory and
	// disk: about ten full-size uploads, so that many accounts cannot fill the disk.
	DefaultSpoolTotal = 256 << 20
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
	// with our cookies (cross-site WebSocket hijacking). Empty refuses every upgrade that
	// ExtraOrigins does not admit.
	Origin string
	// ExtraOrigins are further exact origins (scheme://host[:port], as browsers write
	// them) whose pages may open WebSockets: the deployment's CORS origins. They too are
	// matched byte for byte. Fetch Metadata from them may say same-site as well as
	// same-origin, never cross-site: the session cookie is SameSite=Strict, so a
	// cross-site page could only arrive without it, and one that claims otherwise is not a
	// browser telling the truth.
	ExtraOrigins []string
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
	// UploadMinRate (bytes per second) and UploadRateWindow bound how slowly an upload may
	// arrive: the body is measured in consecutive windows of UploadRateWindow from its
	// start, and a window that ends before the body does must have brought
	// UploadMinRate x UploadRateWindow bytes, else the upload ends in 408
	// request_timeout and its spool is freed. Each window counts alone, so a burst
	// cannot pay for a trickle after it. Zero means DefaultUploadMinRate and
	// DefaultUploadRateWindow.
	UploadMinRate    int64
	UploadRateWindow time.Duration

	// WebSocket holds the WebSocket relay's limits; zero fields take the defaults.
	WebSocket WebSocketLimits
	// HTTPPerUserGrant caps one user's proxied HTTP calls in flight per grant (bodies,
	// event streams and uploads); one more is refused with 429 rate_limited before
	// anything reaches upstream. Zero means DefaultHTTPPerUserGrant.
	HTTPPerUserGrant int

	// SpoolDir is where uploads larger than a small in-memory buffer are spooled while
	// they are checked; empty means os.TempDir(). When set, New checks it with
	// CheckSpoolDir. Spool files are created 0600, unlinked as soon as they are open
	// where the system allows it, and removed in any case when the call ends, panics
	// included.
	SpoolDir string
	// SpoolPerUser and SpoolTotal cap the bytes that uploads in flight may spool, per
	// user and altogether (memory and disk). An upload that would pass the user's cap is
	// refused with 429 rate_limited, one that would pass the total with 503 unavailable,
	// before anything reaches upstream. Zero means DefaultSpoolPerUser and
	// DefaultSpoolTotal; a cap below UploadLimit refuses the largest uploads.
	SpoolPerUser int64
	SpoolTotal   int64
}

// Proxy relays the routes in Routes. It is safe for concurrent use.
//
// The session and token are checked when a call starts. An expiring token cuts nothing
// (Cartesia, too, checks tokens when a connection opens, and a voice-agent call must be
// able to outlive a five-minute token). A session that ends does end its WebSockets with
// 1008 "session ended": at once on sign-out (see EndSession) and at its absolute
// deadline, and within WebSocketLimits.SessionCheck when the store reports it gone or
// expired by idleness. Relayed messages count as use of the session (see
// relay.watchSession), so a live call does not idle out.
//
// Limitation: signing out or a session timing out does not cut an HTTP response that
// is already streaming; that ends when upstream finishes or goes quiet for StreamIdle.
type Proxy struct {
	upstream *url.URL
	cfg      Config
	streams  *streams
	// calls counts HTTP calls in flight per user and grant, for HTTPPerUserGrant.
	calls *slots
	// spools accounts the bytes uploads in flight hold, for SpoolPerUser and SpoolTotal;
	// spoolFiles counts the spool files ever created, for tests.
	spools     *spoolBudget
	spoolFiles atomic.Int64
	// extraOrigins is Config.ExtraOrigins as a set, for checkOrigin.
	extraOrigins map[string]bool
	// originPatterns are Origin and ExtraOrigins for coder/websocket's own origin check,
	// a second layer behind ours.
	originPatterns []string
}

// New checks the configuration and returns a Proxy.
func New(cfg Config) (*Proxy, error) {
	upstream, _, err := ParseOrigin(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream: %w", err)
	}
	u, err := url.Parse(upstream)
	if err != nil {
		return nil, fmt.Errorf("proxy: upstream %q: %w", upstream, err)
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
	orDefault(&cfg.UploadMinRate, DefaultUploadMinRate)
	orDefault(&cfg.UploadRateWindow, DefaultUploadRateWindow)
	cfg.WebSocket = cfg.WebSocket.withDefaults()

	orDefault(&cfg.HTTPPerUserGrant, DefaultHTTPPerUserGrant)
	orDefault(&cfg.SpoolPerUser, DefaultSpoolPerUser)
	orDefault(&cfg.SpoolTotal, DefaultSpoolTotal)
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = os.TempDir()
	} else if err := CheckSpoolDir(cfg.SpoolDir); err != nil {
		return nil, err
	}

	p := &Proxy{upstream: &url.URL{Scheme: u.Scheme, Host: u.Host}, cfg: cfg,
		streams:      newStreams(cfg.WebSocket.PerUserGrant),
		calls:        newSlots(cfg.HTTPPerUserGrant),
		spools:       newSpoolBudget(cfg.SpoolPerUser, cfg.SpoolTotal),
		extraOrigins: map[string]bool{}}
	if cfg.Origin != "" {
		p.originPatterns = []string{matchLiteral(cfg.Origin)}
	}
	for _, o := range cfg.ExtraOrigins {
		if !IsExactOrigin(o) {
			return nil, fmt.Errorf("proxy: extra WebSocket origin %q is not "+
				"scheme://host[:port]", o)
		}
		p.extraOrigins[o] = true
		p.originPatterns = append(p.originPatterns, matchLiteral(o))
	}
	return p, nil
}

// CheckSpoolDir makes sure dir (Config.SpoolDir) is an existing directory the server can
// create files in, so that a typo or a read-only mount fails the start rather than every
// upload too large for memory. It creates a probe file there and removes it at once.
func CheckSpoolDir(dir string) error {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("proxy: spool directory %q does not exist", dir)
	case err != nil:
		return fmt.Errorf("proxy: spool directory %q: %w", dir, err)
	case !fi.IsDir():
		return fmt.Errorf("proxy: spool directory %q is not a directory", dir)
	}

	f, err := os.CreateTemp(dir, "voxgate-probe-*")
	if err != nil {
		return fmt.Errorf("proxy: spool directory %q is not writable: %w", dir, err)
	}
	name := f.Name()
	if err := errors.Join(f.Close(), os.Remove(name)); err != nil {
		return fmt.Errorf("proxy: spool directory %q: remove the probe file: %w", dir, err)
	}
	return nil
}

// Handler serves one route. The caller registers it under its own prefix and method.
//
// Limitation: requests that are refused before their body is read leave that body to
// net/http, which waits for it without a deadline; mount the handler behind a per-request
// body deadline (package api does) so that a body that never comes cannot hold a
// connection.
func (p *Proxy) Handler(rt Route) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c := &call{p: p, rt: rt, route: r.URL.Path, start: time.Now(), status: http.StatusOK}
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
	p  *Proxy
	rt Route
	// route is the request path, for log events.
	route  string
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
	// upstream says back; guard finds it in what upstream answers, which then never
	// reaches the client.
	secret string
	guard  *echoGuard
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
	var size int64
	ctype := "" // the client's
	if c.rt.Kind == Upload {
		// The whole upload is checked before upstream sees any of it; the spool is
		// removed when the call ends, however it ends.
		sp, formType, ok := c.spoolUpload(w, r)
		if !ok {
			return
		}
		defer sp.Close()
		body, size, ctype = sp.reader(), sp.size, formType
	} else {
		raw, ok := c.readBody(w, r)
		if !ok {
			return
		}
		body, size = bytes.NewReader(raw), int64(len(raw))
	}

	resp, ok := c.send(w, r, tok, query, body, size, ctype)
	if !ok {
		return
	}
	defer resp.Body.Close()
	c.bytesUp = size

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
	c.guard = newEchoGuard(c.secret)
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
// length; ctype, when not empty, replaces the client's Content-Type (a re-encoded form).
func (c *call) send(w http.ResponseWriter, r *http.Request, tok token.Token, query string,
	body io.Reader, size int64, ctype string) (*http.Response, bool) {
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
	if sr, ok := body.(*io.SectionReader); ok {
		// A spooled upload can be read again, so the transport may retry it on a fresh
		// connection when a pooled one turns out closed.
		out.GetBody = func() (io.ReadCloser, error) {
			return io.NopCloser(io.NewSectionReader(sr, 0, sr.Size())), nil
		}
	}
	for _, h := range requestHeaders {
		if v := r.Header.Values(h); len(v) > 0 {
			out.Header[h] = append([]string(nil), v...)
		}
	}
	if ctype != "" {
		out.Header.Set("Content-Type", ctype)
	}
	out.Header.Set("Authorization", "Bearer "+tok.Value.Reveal())
	out.Header.Set("Cartesia-Version", c.p.cfg.Version)
	out.Header.Set("User-Agent", "voxgate")

	resp, err := c.p.cfg.Client.Do(out)
	if err == nil {
		return resp, true
	}
	c.unreachable(w, r, err)
	return nil, false
}

// unreachable answers a request or handshake that got no answer from upstream: nothing
// when the browser went away (nobody is left to answer), 504 after a timeout, else 502.
func (c *call) unreachable(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case r.Context().Err() != nil:
		c.status, c.note = 499, "client_closed"
	case token.IsTimeout(err): // deadlines included
		c.note = "upstream_timeout"
		c.fail(w, http.StatusGatewayTimeout, "upstream_timeout",
			"the upstream did not answer in time")
	default:
		c.note = "upstream_unavailable"
		c.fail(w, http.StatusBadGateway, "upstream_unavailable", "the upstream is unreachable")
	}
}

// upstreamCodes maps upstream error statuses to our codes; anything else is
// upstream_error. A 401 upstream means the token was refused, which the client fixes the
// same way as an expired one: mint again and retry once.
var upstreamCodes = map[int]string{
	http.StatusUnauthorized:    "token_expired",
	http.StatusForbidden:       "grant_forbidden",
	http.StatusTooManyRequests: "rate_limited",
}

// relayError answers an upstream error in our shape, keeping the status. Upstream's
// Retry-After is relayed as whole seconds, at most token.MaxRetryAfter.
func (c *call) relayError(w http.ResponseWriter, resp *http.Response) {
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	ue := token.ParseUpstreamError(resp.StatusCode, resp.Header, raw, c.secret)

	code, ok := upstreamCodes[resp.StatusCode]
	if !ok {
		code = "upstream_error"
	}
	msg := ue.Error()
	if ra := token.CapRetryAfter(ue.RetryAfter, c.p.cfg.Now()); ra != "" {
		w.Header().Set("Retry-After", ra)
	}

	c.status = resp.StatusCode
	reply.ErrorDetail(w, resp.StatusCode, reply.Detail{Code: code, Message: msg,
		Upstream: ue.Reply()})
}

// errStreamIdle cancels an upstream body that has gone quiet.
var errStreamIdle = errors.New("proxy: upstream stream idle")

// downstream is the client side of a relayed response: the writer, its controller for
// flushes and deadlines, the idle timer that closes a quiet upstream body, and the
// status line and headers, which are sent with the first bytes that pass the echo check
// (or at the end of an empty body). Until then a failure can still be answered as JSON.
type downstream struct {
	c         *call
	w         http.ResponseWriter
	r         *http.Request
	rc        *http.ResponseController
	status    int
	header    http.Header
	started   bool
	idle      *time.Timer
	idleFired atomic.Bool
}

// startResponse prepares the relay of a successful answer: it picks the allowlisted
// headers and arms the idle timer, which cancels the upstream read when nothing arrives
// for StreamIdle. Nothing is sent yet. The caller must call stop. When a header that
// would be relayed carries the token, it answers 502 instead and returns false.
//
// The Content-Type is upstream's only when the route may answer that type (see
// Route.Types), else application/octet-stream: a success answered as, say, text/html
// would otherwise be a page of our origin. Retry-After passes only in a valid form, as
// whole seconds of at most token.MaxRetryAfter.
func (c *call) startResponse(w http.ResponseWriter, r *http.Request,
	resp *http.Response) (*downstream, bool) {
	h := http.Header{}
	for _, name := range responseHeaders {
		if v := resp.Header.Values(name); len(v) > 0 {
			h[http.CanonicalHeaderKey(name)] = append([]string(nil), v...)
		}
	}
	h.Set("Content-Type", c.rt.responseType(resp.Header.Values("Content-Type")))
	if ra := token.CapRetryAfter(resp.Header.Get("Retry-After"), c.p.cfg.Now()); ra != "" &&
		len(resp.Header.Values("Retry-After")) == 1 {
		h.Set("Retry-After", ra)
	}

	d := &downstream{c: c, w: w, r: r, rc: http.NewResponseController(w),
		status: resp.StatusCode, header: h}
	if c.guard.foundIn(h) {
		d.echo("header")
		return nil, false
	}
	d.idle = time.AfterFunc(c.p.cfg.StreamIdle, func() {
		d.idleFired.Store(true)
		_ = resp.Body.Close()
	})
	return d, true
}

func (d *downstream) stop() { d.idle.Stop() }

// upstreamRead notes that bytes arrived from upstream.
func (d *downstream) upstreamRead() { d.idle.Reset(d.c.p.cfg.StreamIdle) }

// begin sends the status line and headers, once.
func (d *downstream) begin() {
	if d.started {
		return
	}
	d.started = true
	maps.Copy(d.w.Header(), d.header)
	d.c.status = d.status
	d.w.WriteHeader(d.status)
	_ = d.rc.Flush()
}

// send writes p to the client within WriteTimeout and flushes it. Empty p sends nothing.
func (d *downstream) send(p []byte) bool {
	if len(p) == 0 {
		return true
	}
	d.begin()
	_ = d.rc.SetWriteDeadline(time.Now().Add(d.c.p.cfg.WriteTimeout))
	if _, err := d.w.Write(p); err != nil {
		d.c.note = "client_write_failed"
		return false
	}
	d.c.bytesDown += int64(len(p))
	_ = d.rc.Flush()
	return true
}

// finish sends the bytes the echo check still held, and the headers of an empty body.
func (d *downstream) finish() {
	if d.send(d.c.guard.rest()) {
		d.begin()
	}
}

// pass checks the next piece of the upstream body and sends what is safe of it. It
// reports false when the relay must end: the client is gone, or the piece completed an
// echo of the token (then answered, see echo).
func (d *downstream) pass(p []byte) bool {
	first, second, echo := d.c.guard.next(p)
	if echo {
		d.echo("body")
		return false
	}
	return d.send(first) && d.send(second)
}

// echo withholds an answer that carries the call's token: a 502 upstream_error while
// nothing is sent yet, else a cut stream (the bytes before the echo were already
// relayed; the echo itself never is).
func (d *downstream) echo(where string) {
	d.c.echoBlocked(d.c.route, where)
	if !d.started {
		d.c.fail(d.w, http.StatusBadGateway, "upstream_error",
			"the upstream's answer was withheld: it contained this call's credential")
		return
	}
	panic(http.ErrAbortHandler)
}

// cut ends a response whose upstream failed or misbehaved (note says how). Before the
// status line is sent it is answered as JSON; after, the handler aborts, so the client
// sees a truncated response rather than a clean end.
func (d *downstream) cut(note string) {
	d.c.note = note
	if d.idleFired.Load() {
		d.c.note = errStreamIdle.Error()
	}
	switch {
	case d.started:
		// The deferred log in Handler still runs while this unwinds.
		panic(http.ErrAbortHandler)
	case d.r.Context().Err() != nil:
		d.c.status = 499 // nobody is left to answer
	case d.idleFired.Load():
		d.c.fail(d.w, http.StatusGatewayTimeout, "upstream_timeout",
			"the upstream stopped sending")
	default:
		d.c.fail(d.w, http.StatusBadGateway, "upstream_error",
			"the upstream's answer failed before any of it was relayed")
	}
}

// abort ends the relay after an upstream read error.
func (d *downstream) abort() {
	note := "upstream_read_failed"
	if d.r.Context().Err() != nil {
		note = "client_closed"
	}
	d.cut(note)
}

// relayStream copies allowlisted headers and then the body, flushing after every read so
// audio reaches the browser as it is produced. Every read passes the echo check first.
func (c *call) relayStream(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	d, ok := c.startResponse(w, r, resp)
	if !ok {
		return
	}
	defer d.stop()

	buf := make([]byte, copyBuffer)
	for {
		n, rerr := resp.Body.Read(buf)
		if n > 0 {
			d.upstreamRead()
			if !d.pass(buf[:n]) {
				return
			}
		}
		if rerr == io.EOF {
			d.finish()
			return
		}
		if rerr != nil {
			d.abort()
			return
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
