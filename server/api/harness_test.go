package api_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

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

// harness is the whole api handler in front of a sectest fake Cartesia, with two users:
// alice (every grant, up to 3600 s) and bob (tts only, up to 600 s). Every test that
// builds one ends with the sectest post-conditions G1-G4 over everything the harness
// sent, received and logged.
type harness struct {
	t      *testing.T
	clk    *sectest.Clock
	fake   *sectest.FakeCartesia
	logs   *sectest.LogSink
	rec    *sectest.Recorder
	srv    *httptest.Server
	origin string
	host   string
}

type harnessOption func(*api.Config)

func newHarness(t *testing.T, opts ...harnessOption) *harness {
	t.Helper()
	h := &harness{t: t, clk: sectest.NewClock(time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)),
		logs: &sectest.LogSink{}, rec: &sectest.Recorder{}}
	// Registered first, so that the checks run after the server and the fake are closed.
	checks := &sectest.Checks{Logs: h.logs, Responses: h.rec, Allowed: upstreamRoutes()}
	sectest.Guard(t, checks)
	// Plain HTTP keeps the minter's and the proxy's own default clients under test.
	h.fake = sectest.NewPlainFakeCartesia(t)
	checks.Fake, checks.Evil = h.fake, sectest.NewEvil(t)

	h.srv = httptest.NewUnstartedServer(nil)
	h.host = h.srv.Listener.Addr().String()
	h.origin = "http://" + h.host

	alice, err := session.NewUser("alice", "alice-pw", token.Grants(), time.Hour, bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	bob, _ := session.NewUser("bob", "bob-pw", []token.Grant{token.TTS}, 600*time.Second,
		bcrypt.MinCost)
	// carol is the third user that an account-wide 429 needs (see coolDowns).
	carol, _ := session.NewUser("carol", "carol-pw", []token.Grant{token.TTS}, time.Hour,
		bcrypt.MinCost)
	users, err := session.NewDirectory([]session.User{alice, bob, carol})
	if err != nil {
		t.Fatal(err)
	}
	sealer, _ := seal.NewRandom()
	minter, err := token.NewMinter(token.MinterConfig{Upstream: h.fake.URL(),
		Key: mustKey(t), Version: "2026-03-01", Now: h.clk.Now})
	if err != nil {
		t.Fatal(err)
	}

	cfg := api.Config{
		PublicOrigin:    h.origin,
		Upstream:        h.fake.URL(),
		UpstreamKind:    api.UpstreamEmulator,
		CartesiaVersion: "2026-03-01",
		Minter:          minter,
		Sealer:          sealer,
		Users:           users,
		TokenTTL:        300 * time.Second,
		MintLimit:       api.RateLimit{Every: time.Millisecond, Burst: 1000},
		Static:          staticFS(),
		Logger:          h.logs.Logger(),
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
	return h
}

// upstreamRoutes is G3's allowlist: the mint and every proxy route's upstream.
func upstreamRoutes() []string {
	out := []string{sectest.RouteMint}
	for _, rt := range proxy.Routes() {
		out = append(out, rt.Method+" "+rt.Upstream)
	}
	return out
}

// mustKey is the canary key as the minter takes it.
func mustKey(t *testing.T) token.APIKey {
	t.Helper()
	k, err := token.LoadAPIKey(func(n string) string {
		if n == token.EnvAPIKey {
			return sectest.CanaryKey
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	return k
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
	// Read through the recorder, so that G1 sees every answer.
	res, err := h.rec.Wrap(rt).RoundTrip(hr)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
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
