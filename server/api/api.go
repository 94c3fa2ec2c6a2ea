// Package api is the companion server's HTTP surface: it composes sign-in, token minting,
// the Cartesia proxy and the static page behind one handler, with the Host allowlist,
// security headers and CSRF checks every route shares.
//
// It owns routing, cookies and the browser-facing JSON; it delegates the API key to
// package token (through a Minter), cookie sealing to package seal, sessions to package
// session and forwarding to package proxy. It never reads the API key itself, and it
// returns a token in a response body only from POST /api/token/direct, a route that
// exists only when the deployment turns direct mode on (Config.DirectGrants).
package api

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// Minter mints one access token for one grant; *token.Minter is the implementation.
type Minter interface {
	Mint(ctx context.Context, g token.Grant, ttl time.Duration) (token.Token, error)
}

// RateLimit allows one event per Every on average, with bursts of up to Burst.
type RateLimit struct {
	Every time.Duration
	Burst int
}

// Defaults for Config's zero values.
var (
	// DefaultMintLimit is 30 mints a minute per user, 15 at once: plenty for a page that
	// refreshes each grant once per token lifetime, and a ceiling on what a stolen session
	// can cost.
	DefaultMintLimit = RateLimit{Every: 2 * time.Second, Burst: 15}
	// DefaultLoginPairLimit slows one address guessing one name's password to 5 a
	// minute, after 5 at once.
	DefaultLoginPairLimit = RateLimit{Every: 12 * time.Second, Burst: 5}
	// DefaultLoginUserLimit slows guessing one name's password from many addresses to 10
	// a minute, after 20 at once. Its burst and rate are larger than the pair limit's, so
	// one or two addresses can never empty it on their own.
	DefaultLoginUserLimit = RateLimit{Every: 6 * time.Second, Burst: 20}
	// DefaultLoginIPLimit slows one address spraying many names to 30 a minute.
	DefaultLoginIPLimit = RateLimit{Every: 2 * time.Second, Burst: 10}
	// DefaultMintLimitTotal is 600 mints a minute for all users together, 60 at once:
	// room for thousands of pages refreshing every few minutes, and a ceiling that keeps
	// the server from bursting far past what upstream allows the key.
	DefaultMintLimitTotal = RateLimit{Every: 100 * time.Millisecond, Burst: 60}
	// DefaultDirectMintLimit is 20 direct mints a minute per user, 10 at once: a token the
	// page holds itself is worth more to a thief than a cookie the page cannot read, so
	// its bucket is separate from MintLimit and smaller. Tabs do not share direct tokens:
	// with 60 s tokens (48 s usable) one tab using all three grants needs about 4 a
	// minute, so this serves four or five tabs of one user.
	DefaultDirectMintLimit = RateLimit{Every: 3 * time.Second, Burst: 10}
)

// DefaultBodyTimeout bounds the arrival of a request body (see Config.BodyTimeout): the
// few KiB of an API call arrive in well under a second.
const DefaultBodyTimeout = 10 * time.Second

// DefaultTokenTTL is the token lifetime when neither the request nor the config says:
// short enough that a leaked token is soon useless, long enough to refresh rarely.
const DefaultTokenTTL = 300 * time.Second

// Direct-token lifetimes. A direct token lives in page memory, where any script running
// in the page can read it, so it is kept far shorter than a cookie token: MaxDirectTokenTTL
// is a hard cap no configuration can raise.
const (
	DefaultDirectTokenTTL = 60 * time.Second
	MaxDirectTokenTTL     = 120 * time.Second
)

// Upstream kinds reported by GET /api/info.
const (
	UpstreamEmulator = "emulator"
	UpstreamCartesia = "cartesia"
)

// Config configures the handler.
type Config struct {
	// PublicOrigin is the exact origin pages are served from, e.g. "https://voice.example".
	// CSRF checks compare Origin headers with it byte for byte.
	PublicOrigin string
	// AllowedHosts is the Host header allowlist (host or host:port); empty means the host
	// of PublicOrigin.
	AllowedHosts []string

	// Upstream is the fixed upstream origin the proxy forwards to; UpstreamKind is what
	// /api/info reports ("emulator" or "cartesia").
	Upstream     string
	UpstreamKind string
	// CartesiaVersion is the Cartesia-Version header sent upstream by the proxy.
	CartesiaVersion string
	// UpstreamClient sends proxied requests and WebSocket handshakes; nil means the
	// proxy's default client.
	UpstreamClient *http.Client
	// WebSocketsPerUserGrant caps each user's open proxied WebSockets per grant; one
	// more is refused with 429 rate_limited. Zero means proxy.DefaultWebSocketsPerUserGrant.
	WebSocketsPerUserGrant int
	// HTTPCallsPerUserGrant caps each user's proxied HTTP calls in flight per grant; one
	// more is refused with 429 rate_limited. Zero means proxy.DefaultHTTPPerUserGrant.
	HTTPCallsPerUserGrant int
	// WebSocketSessionCheck is how often an open proxied WebSocket looks its session up
	// again, to end with it when it expires or is deleted elsewhere (see
	// proxy.WebSocketLimits.SessionCheck). Zero means proxy.DefaultSessionCheck.
	WebSocketSessionCheck time.Duration
	// SpoolDir is where the proxy spools uploads while it checks them; empty means the
	// system temp directory. It must exist and be a directory. SpoolPerUser and
	// SpoolTotal cap the bytes spooled per user and altogether; zero means
	// proxy.DefaultSpoolPerUser and proxy.DefaultSpoolTotal.
	SpoolDir     string
	SpoolPerUser int64
	SpoolTotal   int64

	// Minter mints tokens with the API key; Sealer seals them into cookies.
	Minter Minter
	Sealer *seal.Sealer
	// Users is who may sign in; Sessions is who is signed in (nil: an in-memory store
	// using Now and the default timeouts).
	Users    *session.Directory
	Sessions session.Store

	// TokenTTL is the default token lifetime (2 s to 3600 s; zero means 300 s), clamped
	// to each user's maximum.
	TokenTTL time.Duration
	// MintLimit is the per-user mint rate. Sign-in attempts are bounded per client
	// address (LoginIPLimit), per user name and address (LoginPairLimit, which refuses)
	// and per user name (LoginUserLimit, which throttles: see login). Zero values take
	// the defaults.
	MintLimit RateLimit
	// MintLimitTotal is the mint rate of all users together, on both token routes,
	// checked after each user's own limit; past it a mint is answered 429 rate_limited
	// without reaching upstream. Set it below upstream's own rate for the key, so that
	// no burst of ours earns a 429 from upstream (see coolDowns). Zero means
	// DefaultMintLimitTotal.
	MintLimitTotal RateLimit
	LoginPairLimit RateLimit
	LoginUserLimit RateLimit
	LoginIPLimit   RateLimit

	// DirectGrants turns direct mode on for these grants: POST /api/token/direct then
	// answers a token in its body, for the page to call Upstream itself, and the CSP lets
	// the page connect there. Empty (the default) leaves direct mode off and the route
	// unknown (404). The proxy keeps working either way.
	DirectGrants []token.Grant
	// DirectTokenTTL is the longest direct token: whole seconds from 2 to
	// MaxDirectTokenTTL; zero means DefaultDirectTokenTTL.
	DirectTokenTTL time.Duration
	// DirectMintLimit is the per-user rate of direct mints, a bucket separate from
	// MintLimit's; zero means DefaultDirectMintLimit.
	DirectMintLimit RateLimit

	// CORSOrigins are exact origins (scheme://host[:port], as browsers send them) whose
	// pages may call /api/ and /cartesia/ with credentials: their preflights are approved
	// and their requests pass the CSRF check like the public origin's, and the proxy
	// accepts their WebSocket upgrades (same-origin or same-site Fetch Metadata only).
	// Empty (the default) answers no CORS headers at all. The cookies are
	// SameSite=Strict, so only same-site origins (a sibling subdomain) ever get a
	// session this way.
	CORSOrigins []string

	// BodyTimeout bounds how long any request body may take to arrive, on every route
	// (uploads get proxy.DefaultUploadTimeout as a whole and BodyTimeout per pause); zero
	// means DefaultBodyTimeout.
	BodyTimeout time.Duration

	// Static holds index.html, voxgate.js, app.js, style.css, voxgate.d.ts and dist/.
	Static fs.FS
	// Logger receives the audit events; nil discards them.
	Logger *slog.Logger
	// Now is the clock for sessions, tokens and rate limits; nil means time.Now.
	Now func() time.Time
}

// server is the composed handler and its state.
type server struct {
	cfg    Config
	origin string
	// originHost is the host[:port] of origin: pages are only served under it.
	originHost string
	hosts      map[string]bool
	hsts       bool
	log        *slog.Logger
	sessions   session.Store
	proxy      *proxy.Proxy
	// wsRoutes and uploadRoutes are the mux patterns of the proxy's WebSocket and
	// multipart routes, which the CSRF and media-type checks treat specially.
	wsRoutes     map[string]bool
	uploadRoutes map[string]bool

	mintLimits *limiter
	// mintTotal is MintLimitTotal's one bucket, keyed "".
	mintTotal *limiter
	// quota is the upstream quota breaker both token routes mint through; coolDowns
	// holds the users cooling down after a 429 that was theirs alone.
	quota     *breaker
	coolDowns *coolDowns
	// inFlight caps each user's mints waiting for upstream, on both token routes.
	inFlight *mintsInFlight
	// directGrants is Config.DirectGrants as a set (empty: direct mode off) and
	// directLimits the direct route's own bucket per user.
	directGrants map[token.Grant]bool
	directLimits *limiter
	// upstreamOrigin is Config.Upstream as scheme://host, which the page may reach
	// directly in direct mode.
	upstreamOrigin string
	// csp is the Content-Security-Policy of every response.
	csp string
	// corsOrigins is Config.CORSOrigins as a set.
	corsOrigins map[string]bool

	loginByPair *limiter
	loginByUser *limiter
	loginByIP   *limiter
	// knownAddrs remembers, per user name and address key, the last successful sign-in:
	// such an address is still checked when the name's own bucket is empty.
	knownAddrs   *lru[time.Time]
	knownAddrsMu sync.Mutex

	mux *http.ServeMux
}

// New checks cfg and returns the server's handler.
func New(cfg Config) (http.Handler, error) {
	s, err := newServer(cfg)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(cfg Config) (*server, error) {
	origin, host, err := proxy.ParseOrigin(cfg.PublicOrigin)
	if err != nil {
		return nil, fmt.Errorf("api: public origin: %w", err)
	}
	if cfg.Minter == nil || cfg.Sealer == nil || cfg.Users == nil || cfg.Static == nil {
		return nil, errors.New("api: Minter, Sealer, Users and Static are required")
	}
	if cfg.UpstreamKind != UpstreamEmulator && cfg.UpstreamKind != UpstreamCartesia {
		return nil, fmt.Errorf("api: UpstreamKind %q is neither %q nor %q",
			cfg.UpstreamKind, UpstreamEmulator, UpstreamCartesia)
	}
	if cfg.TokenTTL == 0 {
		cfg.TokenTTL = DefaultTokenTTL
	}
	if cfg.TokenTTL < token.MinTTL || cfg.TokenTTL > token.MaxTTL ||
		cfg.TokenTTL%time.Second != 0 {
		return nil, fmt.Errorf("api: token TTL %v is not whole seconds from 2 to 3600",
			cfg.TokenTTL)
	}
	cfg.MintLimit = orDefault(cfg.MintLimit, DefaultMintLimit)
	cfg.MintLimitTotal = orDefault(cfg.MintLimitTotal, DefaultMintLimitTotal)
	cfg.LoginPairLimit = orDefault(cfg.LoginPairLimit, DefaultLoginPairLimit)
	cfg.LoginUserLimit = orDefault(cfg.LoginUserLimit, DefaultLoginUserLimit)
	cfg.LoginIPLimit = orDefault(cfg.LoginIPLimit, DefaultLoginIPLimit)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.BodyTimeout <= 0 {
		cfg.BodyTimeout = DefaultBodyTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Sessions == nil {
		cfg.Sessions = session.NewMemory(session.MemoryConfig{Now: cfg.Now})
	}
	direct, err := checkDirect(&cfg)
	if err != nil {
		return nil, err
	}
	corsOrigins := map[string]bool{}
	for _, o := range cfg.CORSOrigins {
		if err := CheckCORSOrigin(o); err != nil {
			return nil, err
		}
		if err := checkCORSScheme(origin, o); err != nil {
			return nil, err
		}
		corsOrigins[o] = true
	}
	upstreamOrigin, _, err := proxy.ParseOrigin(cfg.Upstream)
	if err != nil {
		return nil, fmt.Errorf("api: upstream: %w", err)
	}

	s := &server{
		cfg:            cfg,
		origin:         origin,
		originHost:     host,
		hosts:          map[string]bool{},
		log:            cfg.Logger,
		sessions:       cfg.Sessions,
		mintLimits:     newLimiter(cfg.MintLimit, cfg.Now, maxLimiterKeys),
		mintTotal:      newLimiter(cfg.MintLimitTotal, cfg.Now, 1),
		quota:          newBreaker(cfg.Now, cfg.Logger),
		coolDowns:      newCoolDowns(cfg.Now, cfg.Logger),
		inFlight:       newMintsInFlight(),
		directGrants:   direct,
		directLimits:   newLimiter(cfg.DirectMintLimit, cfg.Now, maxLimiterKeys),
		upstreamOrigin: upstreamOrigin,
		corsOrigins:    corsOrigins,
		loginByPair:    newLimiter(cfg.LoginPairLimit, cfg.Now, maxLimiterKeys),
		loginByUser:    newLimiter(cfg.LoginUserLimit, cfg.Now, maxLimiterKeys),
		loginByIP:      newLimiter(cfg.LoginIPLimit, cfg.Now, maxLimiterKeys),
		knownAddrs:     newLRU[time.Time](maxLimiterKeys),
	}
	hosts := cfg.AllowedHosts
	if len(hosts) == 0 {
		hosts = []string{host}
	}
	for _, h := range hosts {
		s.hosts[strings.ToLower(h)] = true
	}
	// HSTS only where it cannot lock developers out: HTTPS origins that are not loopback
	// (HSTS on localhost would pin every local port to https).
	s.hsts = strings.HasPrefix(origin, "https://") && !isLoopbackHost(host)
	s.csp = contentSecurityPolicy(s.directOn(), upstreamOrigin)

	s.proxy, err = proxy.New(proxy.Config{
		Upstream:     cfg.Upstream,
		Version:      cfg.CartesiaVersion,
		Origin:       origin,
		ExtraOrigins: cfg.CORSOrigins,
		Client:       cfg.UpstreamClient,
		Sealer:       cfg.Sealer,
		Sessions:     cfg.Sessions,
		Logger:       cfg.Logger,
		Now:          cfg.Now,
		WebSocket: proxy.WebSocketLimits{PerUserGrant: cfg.WebSocketsPerUserGrant,
			SessionCheck: cfg.WebSocketSessionCheck},
		HTTPPerUserGrant: cfg.HTTPCallsPerUserGrant,
		BodyTimeout:      cfg.BodyTimeout,
		SpoolDir:         cfg.SpoolDir,
		SpoolPerUser:     cfg.SpoolPerUser,
		SpoolTotal:       cfg.SpoolTotal,
	})
	if err != nil {
		return nil, fmt.Errorf("api: %w", err)
	}

	s.routes()
	return s, nil
}

func orDefault(l, def RateLimit) RateLimit {
	if l.Every <= 0 || l.Burst <= 0 {
		return def
	}
	return l
}

// isLoopbackHost reports whether host (with or without a port) names this machine.
func isLoopbackHost(host string) bool {
	h := host
	if hh, _, err := net.SplitHostPort(host); err == nil {
		h = hh
	}
	h = strings.Trim(h, "[]")
	if strings.EqualFold(h, "localhost") || strings.HasSuffix(strings.ToLower(h), ".localhost") {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// ServeHTTP runs the middleware chain: the connection's end after a chunked body or any
// HTTP/1.0 request, the body deadline, security headers on everything, then the Host
// allowlist, then (for /api/ and /cartesia/) no-store, CORS for configured origins, CSRF
// and media-type checks, and finally the routes.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	closeAfterChunked(w, r)
	w = s.boundBody(w, r)
	s.securityHeaders(w)

	if !s.hosts[strings.ToLower(r.Host)] {
		s.reject(r, "host_rejected")
		reply.Error(w, http.StatusMisdirectedRequest, "host_rejected",
			"this server does not answer for that host name")
		return
	}

	if s.redirectToOrigin(w, r) {
		return
	}

	if r.RequestURI == "*" {
		// "OPTIONS *" asks about the server as a whole; there is nothing to say.
		notFound(w, r)
		return
	}

	if isGuarded(r.URL.Path) {
		w.Header().Set("Cache-Control", "no-store")
		if s.cors(w, r) {
			return // a preflight from a CORS origin, answered
		}
		if !s.checkCSRF(w, r) || !s.checkMediaType(w, r) {
			return
		}
	}

	s.mux.ServeHTTP(w, r)
}

// closeAfterChunked makes the connection close after answering an HTTP/1 request whose
// body came chunked, and after every HTTP/1.0 request, so that the connection carries no
// request after it.
//
// A request may carry Transfer-Encoding: chunked and a Content-Length together: the
// classic request-smuggling frame (RFC 9112 6.1). net/http frames it by the chunks and
// drops the Content-Length header, so a handler cannot tell it from plain chunking. A
// front end that framed it by the Content-Length instead counted the bytes after the
// last chunk as body; served as the next request on this connection, they would be a
// request nobody in front of us saw. Closing after every chunked request removes that
// next request, at the price of one reconnection for clients that stream an upload on
// HTTP/1.1 (browsers stream request bodies only over HTTP/2, which has no chunking).
//
// HTTP/1.0 hides the same frame: net/http ignores Transfer-Encoding on a 1.0 request
// (chunking is 1.1) and deletes the header, so r.TransferEncoding is empty and the body
// is framed by Content-Length, while a front end that honoured the chunks saw a second
// request inside them. Since a 1.0 request's framing cannot be checked here, every 1.0
// request closes its connection, keep-alive or not; no browser speaks 1.0.
func closeAfterChunked(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && (r.ProtoMinor == 0 || len(r.TransferEncoding) > 0) {
		w.Header().Set("Connection", "close")
	}
}

// redirectToOrigin sends page loads on an allowed alias host (http://localhost:8080 when
// PUBLIC_ORIGIN is http://127.0.0.1:8080) to the public origin. A page on the alias would
// work for fetch (Sec-Fetch-Site says same-origin) but every WebSocket upgrade from it
// would be refused, because upgrades must come from exactly PUBLIC_ORIGIN. Health checks
// and API calls are left alone: load balancers and scripts may use any allowed name.
//
// The Location is the origin, then a path that starts with one "/", then the query:
// nothing from the request can move the authority. A request-target that is no such path
// (an opaque "x:@evil.example/" would have made the origin a user name) is answered 400.
func (s *server) redirectToOrigin(w http.ResponseWriter, r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if strings.EqualFold(r.Host, s.originHost) || isGuarded(r.URL.Path) ||
		r.URL.Path == "/healthz" || r.RequestURI == "*" {
		return false
	}

	target, ok := redirectTarget(r)
	if !ok {
		s.reject(r, "request_target")
		reply.Error(w, http.StatusBadRequest, "bad_request",
			"the request-target must be a path starting with a single /")
		return true
	}
	http.Redirect(w, r, s.origin+target, http.StatusPermanentRedirect)
	return true
}

// redirectTarget returns the path and query of r to append to the origin, cleaned as
// ServeMux would clean them, or false when r's target is not one this server redirects.
//
// Two forms qualify (RFC 9112 3.2): origin-form ("/path?query"), what browsers send,
// and absolute-form ("http://alias/path?query"), which a server must accept from
// proxies; its scheme and authority are dropped (r.Host already came from them and
// passed the allowlist) and its path must obey the same rule. Both keep only a path
// that starts with exactly one "/": "//host" is no path a browser sends, and read on its
// own it names another host, so it gets the 400 too. Everything else (opaque
// "scheme:rest", user info, "*") is refused.
func redirectTarget(r *http.Request) (string, bool) {
	u := r.URL
	if u.Opaque != "" || u.User != nil {
		return "", false
	}
	if !strings.HasPrefix(r.RequestURI, "/") {
		// Only absolute-form may remain; Go accepts no other target here.
		if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return "", false
		}
	}

	p := u.EscapedPath()
	if p == "" && !strings.HasPrefix(r.RequestURI, "/") {
		p = "/" // "http://alias" is the root
	}
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") {
		return "", false
	}
	p = cleanPath(p)
	if u.RawQuery != "" || u.ForceQuery {
		p += "?" + u.RawQuery
	}
	return p, true
}

// cleanPath is path.Clean keeping a trailing slash, as ServeMux cleans request paths:
// the redirect then lands on the path that will be served, with no "." or ".." left.
func cleanPath(p string) string {
	cleaned := path.Clean(p)
	if strings.HasSuffix(p, "/") && cleaned != "/" {
		cleaned += "/"
	}
	return cleaned
}

// reject logs one security_rejected event: the reason, the path and the peer address,
// never a header value, cookie or query.
func (s *server) reject(r *http.Request, reason string, attrs ...any) {
	attrs = append([]any{"reason", reason, "route", r.URL.Path, "remote", r.RemoteAddr}, attrs...)
	s.log.Warn("security_rejected", attrs...)
}
