package security_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// The limits cmd/server puts on its http.Server (server/cmd/server/main.go).
const (
	readHeaderTimeout = 5 * time.Second
	maxHeaderBytes    = 64 << 10
	idleTimeout       = 2 * time.Minute
)

// cartesiaVersion is what cmd/server sends upstream by default.
const cartesiaVersion = "2026-03-01"

// Test accounts: alice may use every grant for up to an hour, bob only tts for 10 min,
// carol only tts for an hour.
const (
	alicePassword = "alice-CANARYPW"
	bobPassword   = "bob-CANARYPW"
	carolPassword = "carol-CANARYPW"
)

// gap skips a test that proves a shortcoming of the product, unless
// VOXGATE_SECURITY_GAPS is set (then it runs, and fails until the gap is closed).
func gap(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("VOXGATE_SECURITY_GAPS") == "" {
		t.Skip("gap: " + what)
	}
}

// env is one composed server in front of a fake Cartesia, with the post-conditions
// registered.
type env struct {
	t      *testing.T
	clk    *sectest.Clock
	fake   *sectest.FakeCartesia
	evil   *sectest.Evil
	logs   *sectest.LogSink
	rec    *sectest.Recorder
	client *http.Client
	srv    *httptest.Server
	origin string
	host   string
}

// setup is what an option may change before the server is composed.
type setup struct {
	api    api.Config
	minter token.MinterConfig
}

type option func(e *env, s *setup)

// newEnv composes the server as cmd/server's compose does. The checks are registered
// first, so they run after every server has shut down.
func newEnv(t *testing.T, opts ...option) *env {
	t.Helper()
	e := &env{t: t, logs: &sectest.LogSink{}, rec: &sectest.Recorder{},
		clk: sectest.NewClock(time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC))}
	checks := &sectest.Checks{Logs: e.logs, Responses: e.rec, Allowed: upstreamRoutes()}
	sectest.Guard(t, checks)

	e.fake = sectest.NewFakeCartesia(t)
	e.evil = sectest.NewEvil(t)
	checks.Fake, checks.Evil = e.fake, e.evil
	e.client = e.rec.Client()

	e.srv = httptest.NewUnstartedServer(nil)
	e.host = e.srv.Listener.Addr().String()
	e.origin = "http://" + e.host
	logger := e.logs.Logger()

	sealer, err := seal.NewRandom()
	if err != nil {
		t.Fatal(err)
	}
	s := &setup{
		minter: token.MinterConfig{
			Upstream: e.fake.URL(),
			Key:      canaryKey(t),
			Version:  cartesiaVersion,
			Client:   e.fake.Trust(token.NewHTTPClient()),
			Now:      e.clk.Now,
		},
		api: api.Config{
			PublicOrigin:    e.origin,
			AllowedHosts:    []string{e.host, "localhost:" + port(e.host)},
			Upstream:        e.fake.URL(),
			UpstreamKind:    api.UpstreamCartesia,
			CartesiaVersion: cartesiaVersion,
			// proxy.New's default client, made to trust the fake.
			UpstreamClient: e.fake.Trust(&http.Client{
				Transport: token.NewTransport(proxy.DefaultHeaderTimeout),
				CheckRedirect: func(*http.Request, []*http.Request) error {
					return http.ErrUseLastResponse
				},
			}),
			Sealer:    sealer,
			Users:     directory(t),
			TokenTTL:  300 * time.Second,
			MintLimit: api.RateLimit{Every: 2 * time.Second, Burst: 15}, // TOKEN_MINT_RATE=30
			Static:    staticFS(),
			Logger:    logger,
			Now:       e.clk.Now,
		},
	}
	for _, o := range opts {
		o(e, s)
	}
	minter, err := token.NewMinter(s.minter)
	if err != nil {
		t.Fatal(err)
	}
	s.api.Minter = minter
	handler, err := api.New(s.api)
	if err != nil {
		t.Fatal(err)
	}

	e.srv.Config.Handler = handler
	e.srv.Config.ReadHeaderTimeout = readHeaderTimeout
	e.srv.Config.MaxHeaderBytes = maxHeaderBytes
	e.srv.Config.IdleTimeout = idleTimeout
	e.srv.Config.ErrorLog = slog.NewLogLogger(logger.Handler(), slog.LevelWarn)
	e.srv.Config.DisableGeneralOptionsHandler = true
	e.srv.Start()
	t.Cleanup(e.srv.Close)
	return e
}

// withAPI changes the api configuration.
func withAPI(f func(*api.Config)) option {
	return func(_ *env, s *setup) { f(&s.api) }
}

// upstreamRoutes is G3's allowlist: every proxy route's upstream, and the mint.
func upstreamRoutes() []string {
	out := []string{sectest.RouteMint}
	for _, rt := range proxy.Routes() {
		out = append(out, rt.Method+" "+rt.Upstream)
	}
	return out
}

func canaryKey(t *testing.T) token.APIKey {
	t.Helper()
	k, err := token.LoadAPIKey(func(name string) string {
		if name == token.EnvAPIKey {
			return sectest.CanaryKey
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func directory(t *testing.T) *session.Directory {
	t.Helper()
	alice, err := session.NewUser("alice", alicePassword, token.Grants(), time.Hour,
		bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bob, err := session.NewUser("bob", bobPassword, []token.Grant{token.TTS},
		600*time.Second, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	// carol is the third user that an account-wide 429 needs (api's coolDowns).
	carol, err := session.NewUser("carol", carolPassword, []token.Grant{token.TTS},
		time.Hour, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	d, err := session.NewDirectory([]session.User{alice, bob, carol})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// staticFS stands in for web.Files after `make build`.
func staticFS() fstest.MapFS {
	return fstest.MapFS{
		"index.html":           {Data: []byte("<!doctype html><title>voxgate</title>")},
		"voxgate.js":           {Data: []byte("export function load() {}")},
		"app.js":               {Data: []byte("import './voxgate.js';")},
		"style.css":            {Data: []byte("body{}")},
		"voxgate.d.ts":         {Data: []byte("export declare function load(): void;")},
		"dist/voxgate.wasm":    {Data: []byte("\x00asm")},
		"dist/voxgate.wasm.br": {Data: []byte("br")},
		"dist/wasm_exec.js":    {Data: []byte("// wasm_exec")},
	}
}

func port(hostport string) string { return hostport[strings.LastIndex(hostport, ":")+1:] }

// call is one browser-like request. The zero value is a same-origin JSON POST with
// X-CSRF: 1, as the page sends.
type call struct {
	method string
	path   string
	body   string
	// stream, when set, is sent instead of body with an unknown length (chunked).
	stream io.Reader
	// header overrides the defaults; an empty value deletes one.
	header map[string]string
	// extra adds repeated or unusual headers after header.
	extra   http.Header
	cookies []*http.Cookie
	// ctx, when set, carries the request (for example an httptrace.ClientTrace).
	ctx context.Context
}

// answer is a response read to its end.
type answer struct {
	status int
	header http.Header
	body   string
}

// code is the error code of one of our JSON errors ("" otherwise).
func (a answer) code() string {
	var b reply.Body
	_ = json.Unmarshal([]byte(a.body), &b)
	return b.Error.Code
}

func (e *env) do(c call) answer {
	e.t.Helper()
	if c.method == "" {
		c.method = http.MethodPost
	}
	var body io.Reader
	if c.body != "" {
		body = strings.NewReader(c.body)
	}
	if c.stream != nil {
		body = io.NopCloser(c.stream) // hides the length: sent chunked
	}
	ctx := c.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	req, err := http.NewRequestWithContext(ctx, c.method, e.srv.URL+c.path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range c.header {
		switch {
		case strings.EqualFold(k, "Host"):
			req.Host = v
		case v == "":
			req.Header.Del(k)
		default:
			req.Header.Set(k, v)
		}
	}
	for k, vs := range c.extra {
		req.Header[k] = append(req.Header[k], vs...)
	}
	for _, ck := range c.cookies {
		req.AddCookie(ck)
	}

	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", c.method, c.path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// login signs user in and returns the session cookie.
func (e *env) login(user, password string) *http.Cookie {
	e.t.Helper()
	a := e.do(call{path: "/api/login",
		body: fmt.Sprintf(`{"username":%q,"password":%q}`, user, password)})
	if a.status != http.StatusOK {
		e.t.Fatalf("login %s: %d %s", user, a.status, a.body)
	}
	c := setCookie(e.t, a, session.CookieName)
	if c == nil {
		e.t.Fatal("login set no session cookie")
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}
}

// mint asks for grant's token and returns its cookie.
func (e *env) mint(sess *http.Cookie, grant token.Grant) *http.Cookie {
	e.t.Helper()
	a := e.do(call{path: "/api/token", body: fmt.Sprintf(`{"grant":%q}`, grant),
		cookies: []*http.Cookie{sess}})
	c := setCookie(e.t, a, seal.CookieName(grant))
	if a.status != http.StatusOK || c == nil {
		e.t.Fatalf("mint %s: %d %s", grant, a.status, a.body)
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}
}

// signedIn signs alice in and mints every grant: her session cookie first, then one
// token cookie per grant.
func (e *env) signedIn() []*http.Cookie {
	e.t.Helper()
	sess := e.login("alice", alicePassword)
	out := []*http.Cookie{sess}
	for _, g := range token.Grants() {
		out = append(out, e.mint(sess, g))
	}
	return out
}

// setCookie returns the Set-Cookie named name, parsed from its raw line.
func setCookie(t *testing.T, a answer, name string) *http.Cookie {
	t.Helper()
	for _, line := range a.header.Values("Set-Cookie") {
		c, err := http.ParseSetCookie(line)
		if err != nil {
			t.Fatalf("unparsable Set-Cookie %q: %v", line, err)
		}
		if c.Name == name {
			return c
		}
	}
	return nil
}

// browserPath is where a proxy route is served to the page, with an example agent id.
func browserPath(rt proxy.Route) string {
	return "/cartesia" + strings.Replace(rt.Path, "{agent_id}", "agent_1", 1)
}

// proxyCall is a valid call of rt's kind: a JSON body, or a multipart upload.
func proxyCall(rt proxy.Route, cookies []*http.Cookie) call {
	c := call{path: browserPath(rt), body: `{"transcript":"hello","model_id":"sonic-3"}`,
		cookies: cookies}
	if rt.Kind == proxy.Upload {
		c.body = "--b\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nink-whisper\r\n" +
			"--b\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a.wav\"\r\n" +
			"Content-Type: audio/wav\r\n\r\nRIFF\r\n--b--\r\n"
		c.header = map[string]string{"Content-Type": "multipart/form-data; boundary=b"}
	}
	return c
}

// routesOf returns the proxy routes of the given kinds (all when none are given).
func routesOf(kinds ...proxy.Kind) []proxy.Route {
	var out []proxy.Route
	for _, rt := range proxy.Routes() {
		if len(kinds) == 0 || containsKind(kinds, rt.Kind) {
			out = append(out, rt)
		}
	}
	return out
}

func containsKind(list []proxy.Kind, k proxy.Kind) bool {
	for _, v := range list {
		if v == k {
			return true
		}
	}
	return false
}

var httpKinds = []proxy.Kind{proxy.Stream, proxy.Events, proxy.Upload}

// dialWS opens path as a page on the origin would (Origin, Fetch Metadata, cookies),
// with hdr's values on top, through the recording client.
func (e *env) dialWS(path string, hdr http.Header, cookies ...*http.Cookie) (
	*websocket.Conn, *http.Response, error) {
	h := http.Header{"Origin": {e.origin}, "Sec-Fetch-Site": {"same-origin"},
		"Sec-Fetch-Mode": {"websocket"}}
	for k, v := range hdr {
		h[k] = v
	}
	var parts []string
	for _, c := range cookies {
		parts = append(parts, c.Name+"="+c.Value)
	}
	if len(parts) > 0 {
		h.Set("Cookie", strings.Join(parts, "; "))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, resp, err := websocket.Dial(ctx, "ws://"+e.host+path,
		&websocket.DialOptions{HTTPClient: e.client, HTTPHeader: h})
	if resp != nil && resp.Body != nil && err != nil {
		// Read what coder/websocket kept of the refusal now, so that the recorder has it,
		// and leave a copy for the test.
		b, _ := io.ReadAll(resp.Body)
		resp.Body = io.NopCloser(bytes.NewReader(b))
	}
	if c != nil {
		e.t.Cleanup(func() { _ = c.CloseNow() })
	}
	return c, resp, err
}

// roundTrip sends msg on c and returns the echo, noting it for the leak checks.
func (e *env) roundTrip(c *websocket.Conn, path string, msg []byte) []byte {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		e.t.Fatalf("write on %s: %v", path, err)
	}
	_, got, err := c.Read(ctx)
	if err != nil {
		e.t.Fatalf("read on %s: %v", path, err)
	}
	e.rec.Note("WS", path, 0, nil, got)
	return got
}

// closeOf waits for c to end and returns the close frame the server sent (code -1 when
// the connection dropped without one), noting the reason for the leak checks.
func (e *env) closeOf(c *websocket.Conn, path string, within time.Duration) websocket.CloseError {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), within)
	defer cancel()
	for {
		_, msg, err := c.Read(ctx)
		if err == nil {
			e.rec.Note("WS", path, 0, nil, msg)
			continue
		}
		var ce websocket.CloseError
		if errors.As(err, &ce) {
			e.rec.Note("WS-CLOSE", path, int(ce.Code), nil, []byte(ce.Reason))
			return ce
		}
		return websocket.CloseError{Code: -1, Reason: err.Error()}
	}
}

// refusalCode reads a refused upgrade's status and JSON error code.
func refusalCode(t *testing.T, resp *http.Response, err error) (int, string) {
	t.Helper()
	if err == nil {
		t.Fatal("the upgrade was accepted")
	}
	if resp == nil {
		t.Fatalf("no HTTP answer: %v", err)
	}
	b, _ := io.ReadAll(resp.Body)
	var body reply.Body
	_ = json.Unmarshal(b, &body)
	return resp.StatusCode, body.Error.Code
}

// raw writes text on a fresh connection and reads one answer within the given time
// (status 0 when none came), for requests no HTTP client would send.
func (e *env) raw(text string, within time.Duration) answer {
	e.t.Helper()
	conn, err := net.Dial("tcp", e.host)
	if err != nil {
		e.t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(within))
	if _, err := io.WriteString(conn, text); err != nil {
		e.t.Fatalf("write: %v", err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return answer{}
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	line, _, _ := strings.Cut(text, "\r\n")
	e.rec.Note("RAW", line, resp.StatusCode, resp.Header, b)
	return answer{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// TestFakePlaysEveryProxyRoute keeps the fake in step with the proxy's table: a new
// route needs a fake endpoint (and a place in G3's allowlist, which is derived).
func TestFakePlaysEveryProxyRoute(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	for _, route := range upstreamRoutes() {
		if f.Default(route) == nil {
			t.Errorf("the fake has no endpoint for %s", route)
		}
	}
}
