package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/fstest"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// canaryKey is the API key every api test runs with. The harness fails any test in which
// it (or an upstream token) shows up in a response or a log line.
const canaryKey = "sk_car_CANARY_api_5d1e"

const tokenPrefix = "ctok_CANARY_"

type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }

func (c *clock) Advance(d time.Duration) { c.mu.Lock(); c.t = c.t.Add(d); c.mu.Unlock() }

// upstreamCall is one request the fake Cartesia received.
type upstreamCall struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// fakeCartesia mints ctok_CANARY_<n> tokens for the canary key and answers /tts/bytes
// for those tokens; mint and tts can be replaced per test.
type fakeCartesia struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls []upstreamCall
	n     int
	mint  http.HandlerFunc
	tts   http.HandlerFunc
}

func newFakeCartesia(t *testing.T) *fakeCartesia {
	f := &fakeCartesia{}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.calls = append(f.calls, upstreamCall{r.Method, r.URL.Path, r.URL.RawQuery,
			r.Header.Clone(), body})
		mint, tts := f.mint, f.tts
		f.mu.Unlock()

		switch r.URL.Path {
		case "/access-token":
			if mint != nil {
				mint(w, r)
				return
			}
			if r.Header.Get("Authorization") != "Bearer "+canaryKey {
				http.Error(w, "Unauthorized: bad key", http.StatusUnauthorized)
				return
			}
			f.mu.Lock()
			f.n++
			tok := fmt.Sprintf("%s%d", tokenPrefix, f.n)
			f.mu.Unlock()
			w.Header().Set("Content-Type", "application/json")
			_ = json.NewEncoder(w).Encode(map[string]string{"token": tok})
		case "/tts/bytes":
			if tts != nil {
				tts(w, r)
				return
			}
			if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "+tokenPrefix) {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.Header().Set("Content-Type", "audio/wav")
			_, _ = io.WriteString(w, "RIFF-audio")
		case "/tts/websocket":
			echoWebSocket(w, r)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// echoWebSocket accepts a token-authenticated WebSocket and echoes every message.
func echoWebSocket(w http.ResponseWriter, r *http.Request) {
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer "+tokenPrefix) {
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	for {
		typ, msg, err := c.Read(context.Background())
		if err != nil {
			return
		}
		if err := c.Write(context.Background(), typ, msg); err != nil {
			return
		}
	}
}

func (f *fakeCartesia) callsTo(path string) []upstreamCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []upstreamCall
	for _, c := range f.calls {
		if c.path == path {
			out = append(out, c)
		}
	}
	return out
}

// syncBuffer is a log sink safe for concurrent handlers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// events returns the decoded log events named msg.
func (s *syncBuffer) events(t *testing.T, msg string) []map[string]any {
	t.Helper()
	var out []map[string]any
	for line := range strings.SplitSeq(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("log line %q is not JSON: %v", line, err)
		}
		if e["msg"] == msg {
			out = append(out, e)
		}
	}
	return out
}

// staticFS is what `make build` would leave in web/.
func staticFS() fstest.MapFS {
	return fstest.MapFS{
		"index.html":           {Data: []byte("<!doctype html><title>voxgate</title>")},
		"voxgate.js":           {Data: []byte("export function load() {}")},
		"app.js":               {Data: []byte("import './voxgate.js';")},
		"style.css":            {Data: []byte("body{}")},
		"voxgate.d.ts":         {Data: []byte("export declare function load(): void;")},
		"dist/voxgate.wasm":    {Data: []byte("\x00asm-plain-bundle")},
		"dist/voxgate.wasm.br": {Data: []byte("brotli-bundle")},
		"dist/wasm_exec.js":    {Data: []byte("// go wasm_exec")},
	}
}

// harness is the whole api handler in front of a fake Cartesia, with two users:
// alice (every grant, up to 3600 s) and bob (tts only, up to 600 s).
type harness struct {
	t        *testing.T
	clk      *clock
	up       *fakeCartesia
	srv      *httptest.Server
	origin   string
	host     string
	logs     *syncBuffer
	mu       sync.Mutex
	answered bytes.Buffer // every response's headers and body, for the leak check
}

type harnessOption func(*api.Config)

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, clk: &clock{t: time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)},
		up: newFakeCartesia(t), logs: &syncBuffer{}}
	logger := slog.New(slog.NewJSONHandler(h.logs, nil))

	h.srv = httptest.NewUnstartedServer(nil)
	h.host = h.srv.Listener.Addr().String()
	h.origin = "http://" + h.host

	alice, err := session.NewUser("alice", "alice-pw", token.Grants(), time.Hour, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := session.NewUser("bob", "bob-pw", []token.Grant{token.TTS}, 600*time.Second,
		bcrypt.MinCost)
	users, err := session.NewDirectory([]session.User{alice, bob})
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := seal.NewRandom()
	minter, err := token.NewMinter(token.MinterConfig{Upstream: h.up.srv.URL,
		Key: mustKey(t), Version: "2026-03-01", Now: h.clk.Now})
	if err != nil {
		t.Fatal(err)
	}

	cfg := api.Config{
		PublicOrigin:    h.origin,
		Upstream:        h.up.srv.URL,
		UpstreamKind:    api.UpstreamEmulator,
		CartesiaVersion: "2026-03-01",
		Minter:          minter,
		Sealer:          sealer,
		Users:           users,
		TokenTTL:        300 * time.Second,
		MintLimit:       api.RateLimit{Every: time.Millisecond, Burst: 1000},
		Static:          staticFS(),
		Logger:          logger,
		Now:             h.clk.Now,
	}
	for _, o := range opts {
		o(&cfg)
	}
	handler, err := api.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.srv.Config.Handler = handler
	h.srv.Start()
	t.Cleanup(h.srv.Close)
	t.Cleanup(h.checkNoLeaks)
	return h
}

func mustKey(t *testing.T) token.APIKey {
	k, err := token.LoadAPIKey(func(n string) string {
		if n == token.EnvAPIKey {
			return canaryKey
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// checkNoLeaks is invariant I1 (and its token twin) over everything the test saw.
func (h *harness) checkNoLeaks() {
	h.mu.Lock()
	answered := h.answered.String()
	h.mu.Unlock()
	for what, text := range map[string]string{"a response": answered, "a log line": h.logs.String()} {
		for _, secret := range []string{canaryKey, tokenPrefix, "access_token="} {
			if strings.Contains(text, secret) {
				h.t.Errorf("%s contains %q", what, secret)
			}
		}
	}
	for _, c := range h.up.callsTo("/tts/bytes") {
		if strings.Contains(fmt.Sprint(c.header), canaryKey) {
			h.t.Error("the API key was sent on a proxied call")
		}
	}
}

// req describes one browser-like request; the zero value is a same-origin JSON call
// carrying X-CSRF: 1.
type req struct {
	method  string
	path    string
	body    string
	header  map[string]string // "" value deletes the default
	extra   http.Header       // values added after header, for repeated headers
	cookies []*http.Cookie
	// from is the loopback address the request is sent from ("" for 127.0.0.1), so that
	// tests can play several clients: Linux answers on all of 127.0.0.0/8.
	from string
}

// resp is a finished response.
type resp struct {
	status int
	header http.Header
	body   string
	raw    *http.Response
}

func (h *harness) do(r req) resp {
	h.t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	var body io.Reader
	if r.body != "" {
		body = strings.NewReader(r.body)
	}
	hr, err := http.NewRequest(r.method, h.srv.URL+r.path, body)
	if err != nil {
		h.t.Fatal(err)
	}
	defaults := map[string]string{"X-CSRF": "1", "Sec-Fetch-Site": "same-origin"}
	if r.body != "" {
		defaults["Content-Type"] = "application/json"
	}
	for k, v := range defaults {
		hr.Header.Set(k, v)
	}
	for k, v := range r.header {
		if v == "" {
			hr.Header.Del(k)
			continue
		}
		if strings.EqualFold(k, "Host") {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	for k, vs := range r.extra {
		for _, v := range vs {
			hr.Header.Add(k, v)
		}
	}
	for _, c := range r.cookies {
		hr.AddCookie(c)
	}

	rt := http.DefaultTransport
	if r.from != "" {
		dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(r.from)}}
		tr := &http.Transport{DialContext: dialer.DialContext}
		defer tr.CloseIdleConnections()
		rt = tr
	}
	res, err := rt.RoundTrip(hr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)

	h.mu.Lock()
	fmt.Fprintf(&h.answered, "%v\n%s\n", res.Header, b)
	h.mu.Unlock()
	return resp{status: res.StatusCode, header: res.Header, body: string(b), raw: res}
}

// code is the error code of a JSON error response ("" when the body is not one).
func (r resp) code() string {
	var b reply.Body
	_ = json.Unmarshal([]byte(r.body), &b)
	return b.Error.Code
}

// cookie returns the Set-Cookie named name, parsed from the raw header line.
func (r resp) cookie(t *testing.T, name string) *http.Cookie {
	t.Helper()
	for _, line := range r.header.Values("Set-Cookie") {
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

// login signs user in and returns the session cookie.
func (h *harness) login(user, password string, cookies ...*http.Cookie) *http.Cookie {
	h.t.Helper()
	r := h.do(req{path: "/api/login", cookies: cookies,
		body: fmt.Sprintf(`{"username":%q,"password":%q}`, user, password)})
	if r.status != http.StatusOK {
		h.t.Fatalf("login %s: %d %s", user, r.status, r.body)
	}
	c := r.cookie(h.t, session.CookieName)
	if c == nil {
		h.t.Fatal("login set no session cookie")
	}
	return &http.Cookie{Name: c.Name, Value: c.Value}
}

// mint asks for a grant's token and returns its cookie.
func (h *harness) mint(sess *http.Cookie, body string) (resp, *http.Cookie) {
	h.t.Helper()
	r := h.do(req{path: "/api/token", body: body, cookies: []*http.Cookie{sess}})
	var c *http.Cookie
	for _, g := range token.Grants() {
		if sc := r.cookie(h.t, seal.CookieName(g)); sc != nil {
			c = &http.Cookie{Name: sc.Name, Value: sc.Value}
		}
	}
	return r, c
}
