package sectest

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/coder/websocket"
)

// CanaryKey is the only API key FakeCartesia accepts. Configure the server under test
// with it; Checks fails the test wherever it turns up outside the mint request.
const CanaryKey = "sk_car_CANARY_APIKEY"

// TokenPrefix starts every access token FakeCartesia issues (TokenPrefix + a number).
// Checks treats any text containing it as a leaked token.
const TokenPrefix = "ctok_CANARY_"

// Routes of the fake, as net/http.ServeMux patterns ("METHOD /path"). They are the
// Cartesia endpoints the server calls; Handle replaces any of them.
const (
	RouteMint           = "POST /access-token"
	RouteTTSBytes       = "POST /tts/bytes"
	RouteTTSSSE         = "POST /tts/sse"
	RouteTTSWebSocket   = "GET /tts/websocket"
	RouteSTTWebSocket   = "GET /stt/websocket"
	RouteTurnsWebSocket = "GET /stt/turns/websocket"
	RouteSTT            = "POST /stt"
	RouteTranscriptions = "POST /audio/transcriptions"
	RouteAgent          = "GET /agents/stream/{agent_id}"
)

// routeGrants is which grant a token needs on each proxied route.
var routeGrants = map[string]string{
	RouteTTSBytes: "tts", RouteTTSSSE: "tts", RouteTTSWebSocket: "tts",
	RouteSTTWebSocket: "stt", RouteTurnsWebSocket: "stt", RouteSTT: "stt",
	RouteTranscriptions: "stt", RouteAgent: "agent",
}

// maxRecordedBody bounds what the fake reads of one request body: the server's largest
// upload is 25 MiB.
const maxRecordedBody = 32 << 20

// Request is one request FakeCartesia received.
type Request struct {
	Method   string
	Host     string
	Path     string
	RawQuery string
	Header   http.Header
	// Body is the whole request body, unless Unread.
	Body []byte
	// WebSocket marks an upgrade handshake.
	WebSocket bool
	// Unread marks a request whose route was replaced with HandleUnread: the handler got
	// the live body, so none of it is recorded.
	Unread bool
}

// hook is a replaced route: its handler, and whether it wants the body unread.
type hook struct {
	h      http.Handler
	unread bool
}

// FakeCartesia is a TLS server on 127.0.0.1 that plays Cartesia for the server under
// test and records every request. POST /access-token accepts only CanaryKey (as
// Authorization: Bearer, which is how token.Minter sends it) and issues tokens
// TokenPrefix<n> for the grants asked; the proxied routes accept only those tokens, with
// the route's grant, and answer plausibly: WAV bytes, an event stream, a JSON transcript,
// or a WebSocket that echoes every message. It is safe for concurrent use.
type FakeCartesia struct {
	srv    *httptest.Server
	pool   *x509.CertPool
	mux    *http.ServeMux
	ctx    context.Context
	cancel context.CancelFunc

	mu         sync.Mutex
	requests   []Request
	issued     []string
	grants     map[string][]string // token -> grants it carries
	hooks      map[string]hook
	registered map[string]bool
	tokenLen   int
}

// NewFakeCartesia starts a fake on 127.0.0.1 over TLS, closed when the test ends.
func NewFakeCartesia(t testing.TB) *FakeCartesia {
	t.Helper()
	return newFake(t, true)
}

// NewPlainFakeCartesia starts the fake over plain HTTP, for a server under test that
// cannot be handed a certificate pool (cmd/server's run takes only UPSTREAM_URL, and
// accepts http:// for loopback upstreams). CertPool is then nil and Trust a no-op.
func NewPlainFakeCartesia(t testing.TB) *FakeCartesia {
	t.Helper()
	return newFake(t, false)
}

func newFake(t testing.TB, useTLS bool) *FakeCartesia {
	t.Helper()
	f := &FakeCartesia{mux: http.NewServeMux(), grants: map[string][]string{},
		hooks: map[string]hook{}, registered: map[string]bool{}}
	f.ctx, f.cancel = context.WithCancel(context.Background())
	for route := range f.defaults() {
		f.register(route)
	}

	f.srv = httptest.NewUnstartedServer(f)
	// Handshakes refused on purpose (an untrusting client) would otherwise print noise.
	f.srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	if useTLS {
		f.srv.StartTLS()
		f.pool = x509.NewCertPool()
		f.pool.AddCert(f.srv.Certificate())
	} else {
		f.srv.Start()
	}

	t.Cleanup(func() {
		// Cancelling first ends stalled handlers and echo loops, which Close waits for.
		f.cancel()
		f.srv.Close()
	})
	return f
}

// URL is the fake's origin, https://127.0.0.1:<port> (http:// for the plain fake): the
// server's upstream.
func (f *FakeCartesia) URL() string { return f.srv.URL }

// CertPool holds the fake's certificate and nothing else.
func (f *FakeCartesia) CertPool() *x509.CertPool { return f.pool }

// Trust makes c trust the fake's certificate, and only it, and returns c, so that the
// server under test reaches the fake with verification on (never InsecureSkipVerify).
// c's Transport must be an *http.Transport, as token.NewHTTPClient's is, a wrapper
// with an Unwrap() http.RoundTripper method around one (as Recorder's), or nil (a clone
// of http.DefaultTransport is then used). Its other TLS settings are kept.
func (f *FakeCartesia) Trust(c *http.Client) *http.Client {
	if f.pool == nil {
		return c
	}
	if c.Transport == nil {
		c.Transport = http.DefaultTransport.(*http.Transport).Clone()
	}
	rt := c.Transport
	for {
		u, ok := rt.(interface{ Unwrap() http.RoundTripper })
		if !ok {
			break
		}
		rt = u.Unwrap()
	}
	tr, ok := rt.(*http.Transport)
	if !ok {
		panic(fmt.Sprintf("sectest: Trust needs an *http.Transport, not %T", rt))
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if tr.TLSClientConfig != nil {
		cfg = tr.TLSClientConfig.Clone()
	}
	cfg.RootCAs = f.pool
	tr.TLSClientConfig = cfg
	return c
}

// Handle replaces the handler of route ("METHOD /path", a ServeMux pattern; a new one
// is added) for the rest of the test. The request is recorded, and its body read, before
// h runs; h sees the same body. Default gives the built-in handler to wrap.
func (f *FakeCartesia) Handle(route string, h http.Handler) { f.setHook(route, hook{h: h}) }

// HandleUnread is Handle for a handler that must get the live request body, for example
// one that answers an upload before it has all arrived. The body is not recorded.
func (f *FakeCartesia) HandleUnread(route string, h http.Handler) {
	f.setHook(route, hook{h: h, unread: true})
}

func (f *FakeCartesia) setHook(route string, hk hook) {
	f.mu.Lock()
	f.hooks[route] = hk
	f.mu.Unlock()
	f.register(route)
}

// register routes pattern through dispatch, once.
func (f *FakeCartesia) register(route string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.registered[route] {
		return
	}
	f.registered[route] = true
	f.mux.Handle(route, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.dispatch(route, w, r)
	}))
}

// Default is the built-in handler of route, or nil for a route the fake does not know.
func (f *FakeCartesia) Default(route string) http.Handler {
	return f.defaults()[route]
}

func (f *FakeCartesia) defaults() map[string]http.Handler {
	return map[string]http.Handler{
		RouteMint:           http.HandlerFunc(f.mint),
		RouteTTSBytes:       f.authorized(RouteTTSBytes, http.HandlerFunc(ttsBytes)),
		RouteTTSSSE:         f.authorized(RouteTTSSSE, http.HandlerFunc(ttsSSE)),
		RouteTTSWebSocket:   f.authorized(RouteTTSWebSocket, http.HandlerFunc(echo)),
		RouteSTTWebSocket:   f.authorized(RouteSTTWebSocket, http.HandlerFunc(echo)),
		RouteTurnsWebSocket: f.authorized(RouteTurnsWebSocket, http.HandlerFunc(echo)),
		RouteSTT:            f.authorized(RouteSTT, http.HandlerFunc(transcript)),
		RouteTranscriptions: f.authorized(RouteTranscriptions, http.HandlerFunc(transcript)),
		RouteAgent:          f.authorized(RouteAgent, http.HandlerFunc(echo)),
	}
}

// SetTokenLength makes the tokens issued from now on n characters long (still starting
// with TokenPrefix and still accepted), for cookie-size budgets: Cartesia's JWTs are a
// few hundred bytes, the fake's default ones a dozen.
func (f *FakeCartesia) SetTokenLength(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.tokenLen = n
}

// Requests returns every request received so far, in order.
func (f *FakeCartesia) Requests() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Request(nil), f.requests...)
}

// Take returns the requests received since the last Take (or since the start) and
// forgets them: for a fuzz target, which checks each input's requests on its own and
// would otherwise keep every request of a long run. Checks sees only what is not taken.
func (f *FakeCartesia) Take() []Request {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.requests
	f.requests = nil
	return out
}

// RequestsTo returns the requests that match route ("METHOD /path", {name} matching one
// path segment).
func (f *FakeCartesia) RequestsTo(route string) []Request {
	var out []Request
	for _, r := range f.Requests() {
		if matchRoute(route, r.Method, r.Path) {
			out = append(out, r)
		}
	}
	return out
}

// Issue issues a token for grants without a mint request, as if one had been made: for
// tests that seal tokens into cookies themselves instead of minting through the server.
func (f *FakeCartesia) Issue(grants ...string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.issueLocked(grants)
}

func (f *FakeCartesia) issueLocked(grants []string) string {
	tok := fmt.Sprintf("%s%d", TokenPrefix, len(f.issued)+1)
	if pad := f.tokenLen - len(tok) - 1; pad > 0 {
		tok += "_" + strings.Repeat("x", pad)
	}
	f.issued = append(f.issued, tok)
	f.grants[tok] = append([]string(nil), grants...)
	return tok
}

// Tokens returns every token issued so far.
func (f *FakeCartesia) Tokens() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.issued...)
}

// ServeHTTP records the request and dispatches it. Unknown routes get a JSON 404, after
// being recorded, so that Checks' route allowlist sees them.
func (f *FakeCartesia) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Handlers end when the fake closes, even while a client keeps their request open.
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	stop := context.AfterFunc(f.ctx, cancel)
	defer stop()
	r = r.WithContext(ctx)

	if _, pattern := f.mux.Handler(r); pattern == "" || !f.isRegistered(pattern) {
		f.record(r, false)
		cartesiaError(w, http.StatusNotFound, "not_found", "Not Found", "no such route")
		return
	}
	f.mux.ServeHTTP(w, r)
}

func (f *FakeCartesia) isRegistered(pattern string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.registered[pattern]
}

// dispatch records the request and runs the route's hook or built-in handler.
func (f *FakeCartesia) dispatch(route string, w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	hk, hooked := f.hooks[route]
	f.mu.Unlock()

	if hooked && hk.unread {
		f.record(r, true)
		hk.h.ServeHTTP(w, r)
		return
	}
	f.record(r, false)
	h := f.Default(route)
	if hooked {
		h = hk.h
	}
	if h == nil {
		cartesiaError(w, http.StatusNotFound, "not_found", "Not Found", "no such route")
		return
	}
	h.ServeHTTP(w, r)
}

// record files r; unless unread, it reads the body and puts a copy back for the handler.
func (f *FakeCartesia) record(r *http.Request, unread bool) {
	rec := Request{Method: r.Method, Host: r.Host, Path: r.URL.Path, RawQuery: r.URL.RawQuery,
		Header: r.Header.Clone(), WebSocket: isUpgrade(r), Unread: unread}
	if !unread && r.Body != nil {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxRecordedBody))
		rec.Body = body
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	f.mu.Lock()
	f.requests = append(f.requests, rec)
	f.mu.Unlock()
}

// isUpgrade reports whether r asks for a WebSocket.
func isUpgrade(r *http.Request) bool {
	return strings.EqualFold(r.Header.Get("Upgrade"), "websocket")
}

// mint is POST /access-token: the canary key in, one token per request out.
func (f *FakeCartesia) mint(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer "+CanaryKey {
		cartesiaError(w, http.StatusUnauthorized, "", "Unauthorized", "invalid API key")
		return
	}
	var in struct {
		Grants    map[string]bool `json:"grants"`
		ExpiresIn int             `json:"expires_in"`
	}
	if err := json.NewDecoder(r.Body).Decode(&in); err != nil || in.ExpiresIn < 1 ||
		in.ExpiresIn > 3600 {
		cartesiaError(w, http.StatusBadRequest, "", "Bad Request", "invalid token request")
		return
	}
	var grants []string
	for g, on := range in.Grants {
		if on {
			grants = append(grants, g)
		}
	}
	if len(grants) == 0 {
		cartesiaError(w, http.StatusBadRequest, "", "Bad Request", "no grants")
		return
	}

	f.mu.Lock()
	tok := f.issueLocked(grants)
	f.mu.Unlock()

	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
}

// authorized admits only a Bearer token the fake issued, carrying route's grant, with a
// Cartesia-Version header; the refusals never repeat what was sent.
func (f *FakeCartesia) authorized(route string, next http.Handler) http.Handler {
	grant := routeGrants[route]
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Values("Authorization")
		tok, ok := "", len(auth) == 1
		if ok {
			tok, ok = strings.CutPrefix(auth[0], "Bearer ")
		}
		f.mu.Lock()
		grants, known := f.grants[tok]
		f.mu.Unlock()

		switch {
		case !ok || !known:
			cartesiaError(w, http.StatusUnauthorized, "", "Unauthorized", "invalid access token")
		case !contains(grants, grant):
			cartesiaError(w, http.StatusForbidden, "", "Forbidden",
				"the token lacks the "+grant+" grant")
		case r.Header.Get("Cartesia-Version") == "":
			cartesiaError(w, http.StatusBadRequest, "", "Bad Request",
				"missing Cartesia-Version header")
		default:
			next.ServeHTTP(w, r)
		}
	})
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// cartesiaError writes Cartesia's structured error shape (Cartesia-Version 2026-03-01).
func cartesiaError(w http.ResponseWriter, status int, code, title, message string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	var c any
	if code != "" {
		c = code
	}
	_ = json.NewEncoder(w).Encode(map[string]any{"error_code": c, "title": title,
		"message": message, "request_id": "req_fake"})
}

// wavHeader is the start of a 24 kHz mono 16-bit WAV file, enough for a plausible answer.
var wavHeader = []byte("RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00" +
	"\xc0\x5d\x00\x00\x80\xbb\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00")

// Audio returns a copy of the WAV bytes the fake answers POST /tts/bytes with, for tests
// that check a relay passes them on unchanged.
func Audio() []byte { return bytes.Clone(wavHeader) }

func ttsBytes(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "audio/wav")
	w.Header().Set("Cartesia-Request-Id", "req_fake")
	_, _ = w.Write(wavHeader)
}

func ttsSSE(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/event-stream")
	for _, ev := range []string{
		`{"type":"chunk","data":"AAAA","done":false,"status_code":206}`,
		`{"type":"done","done":true,"status_code":200}`,
	} {
		_, _ = fmt.Fprintf(w, "data: %s\n\n", ev)
		_ = http.NewResponseController(w).Flush()
	}
}

func transcript(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, `{"type":"transcript","text":"hello","language":"en",`+
		`"duration":0.5,"is_final":true}`)
}

// echo accepts a WebSocket and sends every message back unchanged.
func echo(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(8 << 20)
	for {
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		if err := c.Write(r.Context(), typ, msg); err != nil {
			return
		}
	}
}
