package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/scripts/testca"
	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/token"
)

func init() { bcryptCost = bcrypt.MinCost }

func envOf(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestFlagsBeatEnvironmentBeatsDefaults(t *testing.T) {
	c, err := parseConfig(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:8080" || c.CartesiaVersion != "2026-03-01" || c.TokenTTL != 300 ||
		c.DemoUser != "demo" || c.EmulatorPace != 0 || c.TokenMintRate != 30 ||
		c.LogFormat != "text" || c.Upstream != "" || c.PublicOrigin != "" {
		t.Errorf("defaults: %+v", c)
	}

	env := envOf(map[string]string{
		"ADDR": "127.0.0.1:9000", "TOKEN_TTL": "120", "ALLOWED_HOSTS": "a.example, b.example",
		"LOG_FORMAT": "json", "COOKIE_KEY_FILE": "/k", "DEMO_PASSWORD": "pw", "EMULATOR_PACE": "1",
		"TOKEN_MINT_RATE": "10", "PUBLIC_ORIGIN": "https://voice.example", "USERS_FILE": "/u",
		"DEMO_USER": "dora", "CARTESIA_VERSION": "2025-04-16", "UPSTREAM_URL": "https://up.example",
	})
	c, err = parseConfig(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:9000" || c.TokenTTL != 120 || c.LogFormat != "json" ||
		!slices.Equal(c.AllowedHosts, []string{"a.example", "b.example"}) ||
		c.CookieKeyFile != "/k" || c.DemoPassword != "pw" || c.EmulatorPace != 1 ||
		c.TokenMintRate != 10 || c.PublicOrigin != "https://voice.example" || c.UsersFile != "/u" ||
		c.DemoUser != "dora" || c.CartesiaVersion != "2025-04-16" || c.Upstream != "https://up.example" {
		t.Errorf("from the environment: %+v", c)
	}

	c, err = parseConfig([]string{"-addr", "127.0.0.1:0", "-token-ttl", "60", "-log-format", "text"},
		env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.Addr != "127.0.0.1:0" || c.TokenTTL != 60 || c.LogFormat != "text" {
		t.Errorf("flags did not win: %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	tests := []struct {
		env  map[string]string
		args []string
		want string
	}{
		{map[string]string{"TOKEN_TTL": "1"}, nil, "TOKEN_TTL"},
		{map[string]string{"TOKEN_TTL": "3601"}, nil, "TOKEN_TTL"},
		{map[string]string{"TOKEN_TTL": "5m"}, nil, "TOKEN_TTL"},
		{map[string]string{"LOG_FORMAT": "xml"}, nil, "LOG_FORMAT"},
		{map[string]string{"TOKEN_MINT_RATE": "0"}, nil, "TOKEN_MINT_RATE"},
		{map[string]string{"EMULATOR_PACE": "-1"}, nil, "EMULATOR_PACE"},
		{nil, []string{"-api-key", "x"}, "api-key"},
		{nil, []string{"extra"}, "unexpected"},
		{map[string]string{"TLS_CERT_FILE": "/c.pem"}, nil, "TLS_KEY_FILE"},
		{nil, []string{"-tls-key", "/k.pem"}, "TLS_CERT_FILE"},
	}
	for _, tt := range tests {
		_, err := parseConfig(tt.args, envOf(tt.env), io.Discard)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v %v: error %v, want one naming %s", tt.env, tt.args, err, tt.want)
		}
	}
}

func TestNonLoopbackNeedsAnHTTPSOrigin(t *testing.T) {
	tests := []struct {
		addr, origin string
		ok           bool
	}{
		{"127.0.0.1:0", "", true},
		{"localhost:8080", "", true},
		{"[::1]:8080", "", true},
		{"0.0.0.0:8080", "", false},
		{":8080", "", false},
		{"192.168.1.10:8080", "http://192.168.1.10:8080", false},
		{"0.0.0.0:8080", "https://voice.example", true},
		{"nonsense", "", false},
	}
	for _, tt := range tests {
		err := checkExposure(tt.addr, tt.origin, false)
		if (err == nil) != tt.ok {
			t.Errorf("checkExposure(%q, %q) = %v, want ok=%v", tt.addr, tt.origin, err, tt.ok)
		}
		if err != nil && tt.addr != "nonsense" && !strings.Contains(err.Error(), "Secure") {
			t.Errorf("error %q does not explain the Secure cookies", err)
		}
	}
}

func TestServingTLSIsHTTPSEverywhere(t *testing.T) {
	tests := []struct {
		addr, origin string
		ok           bool
	}{
		{"0.0.0.0:8443", "", true},
		{"127.0.0.1:0", "", true},
		{"0.0.0.0:8443", "https://voice.example", true},
		{"127.0.0.1:0", "http://127.0.0.1:8080", false},
	}
	for _, tt := range tests {
		if err := checkExposure(tt.addr, tt.origin, true); (err == nil) != tt.ok {
			t.Errorf("checkExposure(%q, %q, tls) = %v, want ok=%v", tt.addr, tt.origin, err, tt.ok)
		}
	}

	bound := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
	origin, _, err := originDefaults("", nil, "https", bound)
	if err != nil || origin != "https://127.0.0.1:5555" {
		t.Errorf("default origin with TLS = %q, %v", origin, err)
	}
}

func TestOriginDefaultsComeFromTheBoundAddress(t *testing.T) {
	loop := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 5555}
	tests := []struct {
		origin     string
		allowed    []string
		bound      net.Addr
		wantOrigin string
		wantHosts  []string
	}{
		{"", nil, loop, "http://127.0.0.1:5555", []string{"127.0.0.1:5555", "localhost:5555"}},
		{"https://voice.example/", nil, loop, "https://voice.example",
			[]string{"voice.example", "localhost:5555"}},
		{"https://voice.example", nil, &net.TCPAddr{IP: net.IPv4(10, 0, 0, 2), Port: 443},
			"https://voice.example", []string{"voice.example"}},
		{"", []string{"x.example"}, loop, "http://127.0.0.1:5555", []string{"x.example"}},
	}
	for _, tt := range tests {
		origin, hosts, err := originDefaults(tt.origin, tt.allowed, "http", tt.bound)
		if err != nil || origin != tt.wantOrigin || !slices.Equal(hosts, tt.wantHosts) {
			t.Errorf("originDefaults(%q, %v, %v) = %q %v %v, want %q %v", tt.origin, tt.allowed,
				tt.bound, origin, hosts, err, tt.wantOrigin, tt.wantHosts)
		}
	}
	for _, bad := range []string{"voice.example", "https://voice.example/app", "ftp://x"} {
		if _, _, err := originDefaults(bad, nil, "http", loop); err == nil {
			t.Errorf("accepted PUBLIC_ORIGIN %q", bad)
		}
	}
}

func TestUpstreamMustBeHTTPSUnlessLoopback(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"", "https://api.cartesia.ai"},
		{"https://api.cartesia.ai/", "https://api.cartesia.ai"},
		{"http://127.0.0.1:9000", "http://127.0.0.1:9000"},
		{"http://localhost:9000", "http://localhost:9000"},
		{"http://[::1]:9000", "http://[::1]:9000"},
		{"http://api.example", ""},
		{"http://10.0.0.1", ""},
		{"https://api.example/v1", ""},
		{"https://user:pw@api.example", ""},
		{"wss://api.example", ""},
		{"api.example", ""},
	}
	for _, tt := range tests {
		got, err := checkUpstream(tt.in)
		if tt.want == "" && err == nil || tt.want != "" && got != tt.want {
			t.Errorf("checkUpstream(%q) = %q, %v; want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestConfigRenderingHidesSecrets(t *testing.T) {
	key, err := token.LoadAPIKey(envOf(map[string]string{token.EnvAPIKey: sectest.CanaryKey}))
	if err != nil {
		t.Fatal(err)
	}
	c := config{Addr: "127.0.0.1:0", APIKey: key, DemoPassword: "CANARY-demo-pw"}

	var logs bytes.Buffer
	slog.New(slog.NewJSONHandler(&logs, nil)).Info("config", "config", c)
	slog.New(slog.NewTextHandler(&logs, nil)).Info("config", "config", c)
	js, _ := json.Marshal(c)
	for _, s := range []string{fmt.Sprintf("%v %+v %#v", c, c, c), string(js), logs.String()} {
		if strings.Contains(s, "CANARY") {
			t.Errorf("config rendering leaks a secret: %s", s)
		}
		if !strings.Contains(s, "[REDACTED]") {
			t.Errorf("config rendering lacks [REDACTED]: %s", s)
		}
	}
}

// recorders holds the Recorder of each server that started runs, by its URL, so that
// call (and any client given recorded) keeps every answer for G1 without another
// argument.
var recorders sync.Map // string -> *sectest.Recorder

// recorded returns rt, recording through base's Recorder when base is a started server.
func recorded(base string, rt http.RoundTripper) http.RoundTripper {
	if r, ok := recorders.Load(base); ok {
		return r.(*sectest.Recorder).Wrap(rt)
	}
	return rt
}

// started runs the command like a process would and returns the URL from its
// `listening` log event, as the browser test reads it, and what it printed. The test
// then ends with G1 over both outputs and every answer read through call or recorded.
func started(t *testing.T, env map[string]string) (url string, stdout, stderr *sectest.LogSink) {
	t.Helper()
	stdout, stderr = &sectest.LogSink{}, &sectest.LogSink{}
	rec := &sectest.Recorder{}
	// Registered before run starts, so that they run after it has returned.
	sectest.Guard(t, &sectest.Checks{Logs: stderr, Responses: rec})
	sectest.Guard(t, &sectest.Checks{Logs: stdout})
	env["ADDR"] = "127.0.0.1:0"
	env["LOG_FORMAT"] = "json"

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, nil, envOf(env), stdout, stderr) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run returned %v after cancel", err)
		}
		if strings.Contains(stderr.String(), "CANARYPW") {
			t.Errorf("the demo password reached the log: %s", stderr.String())
		}
	})

	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for line := range strings.SplitSeq(stderr.String(), "\n") {
			var e struct {
				Msg string `json:"msg"`
				URL string `json:"url"`
			}
			if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "listening" {
				recorders.Store(e.URL, rec)
				t.Cleanup(func() { recorders.Delete(e.URL) })
				return e.URL, stdout, stderr
			}
		}
		select {
		case err := <-done:
			t.Fatalf("run ended early: %v\n%s", err, stderr.String())
		case <-time.After(10 * time.Millisecond):
		}
	}
	t.Fatalf("no listening event:\n%s", stderr.String())
	return "", nil, nil
}

// startedWithFake is started with the canary key and a sectest fake Cartesia as the
// upstream (plain HTTP: run takes only UPSTREAM_URL, and accepts http:// on loopback).
// The test then also ends with G2-G4 on the fake.
func startedWithFake(t *testing.T, env map[string]string) (url string, stdout,
	stderr *sectest.LogSink, fake *sectest.FakeCartesia) {
	t.Helper()
	checks := &sectest.Checks{Allowed: upstreamRoutes()}
	sectest.Guard(t, checks) // first, so that it runs after the fake is closed
	fake = sectest.NewPlainFakeCartesia(t)
	checks.Fake, checks.Evil = fake, sectest.NewEvil(t)
	env[token.EnvAPIKey], env["UPSTREAM_URL"] = sectest.CanaryKey, fake.URL()
	url, stdout, stderr = started(t, env)
	return url, stdout, stderr, fake
}

// upstreamRoutes is G3's allowlist: the mint and every proxy route's upstream.
func upstreamRoutes() []string {
	out := []string{sectest.RouteMint}
	for _, rt := range proxy.Routes() {
		out = append(out, rt.Method+" "+rt.Upstream)
	}
	return out
}

// call sends a same-origin JSON request the way the page does.
func call(t *testing.T, base, method, path, body string, cookies []*http.Cookie) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
	req.Header.Set("X-CSRF", "1")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := recorded(base, http.DefaultTransport).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

// signInAndMint logs the demo user in and mints a tts token, returning both cookies.
func signInAndMint(t *testing.T, base string) []*http.Cookie {
	t.Helper()
	resp := call(t, base, "POST", "/api/login", `{"username":"demo","password":"CANARYPW"}`, nil)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("login: %d %s", resp.StatusCode, b)
	}
	cookies := resp.Cookies()
	resp = call(t, base, "POST", "/api/token", `{"grant":"tts"}`, cookies)
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("mint: %d %s", resp.StatusCode, b)
	}
	return append(cookies, resp.Cookies()...)
}

func TestServerWithAKeyUsesTheConfiguredUpstream(t *testing.T) {
	base, stdout, stderr, fake := startedWithFake(t, map[string]string{
		"DEMO_PASSWORD": "CANARYPW"})
	cookies := signInAndMint(t, base)
	resp := call(t, base, "POST", "/cartesia/tts/bytes", `{"transcript":"hi"}`, cookies)
	if b, _ := io.ReadAll(resp.Body); resp.StatusCode != 200 || !bytes.Equal(b, sectest.Audio()) {
		t.Errorf("proxy: %d %q", resp.StatusCode, b)
	}

	tokens := fake.Tokens()
	if len(tokens) != 1 {
		t.Fatalf("the fake issued %d tokens, want 1", len(tokens))
	}
	var auth []string
	for _, r := range fake.Requests() {
		auth = append(auth, r.Path+" "+r.Header.Get("Authorization"))
	}
	want := []string{"/access-token Bearer " + sectest.CanaryKey, "/tts/bytes Bearer " + tokens[0]}
	if !slices.Equal(auth, want) {
		t.Errorf("upstream saw %q, want %q", auth, want)
	}
	if !strings.Contains(stdout.String(), base) || !strings.Contains(stdout.String(), "CANARYPW") {
		t.Errorf("stdout lacks the URL or the demo password:\n%s", stdout.String())
	}
	if !strings.Contains(stderr.String(), `"kind":"cartesia"`) {
		t.Errorf("no upstream event for cartesia:\n%s", stderr.String())
	}
}

func TestServerWithoutAKeyRunsTheEmulator(t *testing.T) {
	base, stdout, stderr := started(t, map[string]string{"DEMO_PASSWORD": "CANARYPW"})

	resp := call(t, base, "GET", "/api/info", "", nil)
	if b, _ := io.ReadAll(resp.Body); !strings.Contains(string(b), `"upstream":"emulator"`) {
		t.Errorf("info: %s", b)
	}
	if !strings.Contains(stderr.String(), `"level":"WARN","msg":"upstream"`) ||
		!strings.Contains(stdout.String(), "emulator") {
		t.Errorf("the emulator is not announced loudly:\n%s\n%s", stdout.String(), stderr.String())
	}

	cookies := signInAndMint(t, base)
	body := `{"model_id":"sonic-3","transcript":"Hello there.",` +
		`"voice":{"mode":"id","id":"6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},` +
		`"output_format":{"container":"wav","encoding":"pcm_s16le","sample_rate":24000},` +
		`"language":"en"}`
	resp = call(t, base, "POST", "/cartesia/tts/bytes", body, cookies)
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || !bytes.HasPrefix(b, []byte("RIFF")) {
		t.Errorf("tts through the emulator: %d %q", resp.StatusCode, b[:min(len(b), 200)])
	}
}

func TestServerWithACertificateServesHTTPSOnly(t *testing.T) {
	files, err := testca.New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool, err := files.Pool()
	if err != nil {
		t.Fatal(err)
	}

	base, _, _ := started(t, map[string]string{"DEMO_PASSWORD": "CANARYPW",
		"TLS_CERT_FILE": files.Cert, "TLS_KEY_FILE": files.Key})
	if !strings.HasPrefix(base, "https://127.0.0.1:") {
		t.Fatalf("listening url %q is not https://127.0.0.1:port", base)
	}

	client := &http.Client{Transport: recorded(base, &http.Transport{
		TLSClientConfig:   &tls.Config{RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}},
		ForceAttemptHTTP2: true,
	})}
	resp, err := client.Get(base + "/api/info")
	if err != nil {
		t.Fatalf("https request: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.ProtoMajor != 1 {
		t.Errorf("info over TLS: %d %s, want 200 over HTTP/1.1 (WebSockets need Upgrade)",
			resp.StatusCode, resp.Proto)
	}

	plain := "http://" + strings.TrimPrefix(base, "https://")
	if resp, err := http.Get(plain + "/api/info"); err == nil {
		defer resp.Body.Close()
		if resp.StatusCode == 200 {
			t.Errorf("plain http was answered with 200")
		}
	}
}

func TestStartRefusals(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"public bind over http", map[string]string{"ADDR": "0.0.0.0:0"}, "PUBLIC_ORIGIN"},
		{"plain-http remote upstream", map[string]string{token.EnvAPIKey: sectest.CanaryKey,
			"UPSTREAM_URL": "http://api.example", "ADDR": "127.0.0.1:0"}, "loopback"},
		{"upstream without key", map[string]string{"UPSTREAM_URL": "https://api.example",
			"ADDR": "127.0.0.1:0"}, "no API key"},
		{"both key sources", map[string]string{token.EnvAPIKey: sectest.CanaryKey,
			token.EnvAPIKeyFile: "/nonexistent", "ADDR": "127.0.0.1:0"}, "both"},
		{"unreadable certificate", map[string]string{"TLS_CERT_FILE": "/nonexistent.pem",
			"TLS_KEY_FILE": "/nonexistent-key.pem", "ADDR": "127.0.0.1:0"}, "TLS_CERT_FILE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			err := run(context.Background(), nil, envOf(tt.env), &out, &errOut)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("run error %v, want one mentioning %q", err, tt.want)
			}
			if strings.Contains(err.Error()+out.String()+errOut.String(), sectest.CanaryKey) {
				t.Error("the key was printed")
			}
		})
	}
}

// TestOptionsAsteriskWithAnUnsentBodyIsAnsweredPromptly: net/http's built-in answer to
// "OPTIONS *" would wait for the announced body forever; the server's own handler, with
// its body deadline, answers at once.
func TestOptionsAsteriskWithAnUnsentBodyIsAnsweredPromptly(t *testing.T) {
	base, _, _ := started(t, map[string]string{"DEMO_PASSWORD": "CANARYPW"})
	host := strings.TrimPrefix(base, "http://")

	conn, err := net.Dial("tcp", host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "OPTIONS * HTTP/1.1\r\nHost: %s\r\nContent-Length: 100\r\n\r\n{", host)

	_ = conn.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("no answer: %v", err)
	}
	if resp.StatusCode != http.StatusNotFound || !resp.Close {
		t.Errorf("got %d close=%v, want 404 and a closed connection", resp.StatusCode, resp.Close)
	}
}

func TestDirectModeAndCORSConfig(t *testing.T) {
	c, err := parseConfig(nil, envOf(nil), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if c.DirectGrants != nil || c.DirectTokenTTL != 60 || c.DirectMintRate != 20 ||
		c.CORSOrigins != nil || c.TokenMintRateTotal != 600 {
		t.Errorf("defaults: direct %v %d s %d/min, CORS %v, total %d/min; "+
			"want off, 60, 20, none, 600", c.DirectGrants, c.DirectTokenTTL, c.DirectMintRate,
			c.CORSOrigins, c.TokenMintRateTotal)
	}
	if l := mintLimit(c.DirectMintRate); l.Every != 3*time.Second || l.Burst != 10 {
		t.Errorf("direct limit %+v, want one per 3 s in bursts of 10", l)
	}
	if l := totalMintLimit(c.TokenMintRateTotal); l.Every != 100*time.Millisecond ||
		l.Burst != 60 {
		t.Errorf("total limit %+v, want one per 100 ms in bursts of 60", l)
	}
	if _, err := parseConfig([]string{"-token-mint-rate-total", "0"}, envOf(nil),
		io.Discard); err == nil || !strings.Contains(err.Error(), "TOKEN_MINT_RATE_TOTAL") {
		t.Errorf("a zero total rate: %v, want an error naming TOKEN_MINT_RATE_TOTAL", err)
	}

	env := envOf(map[string]string{"DIRECT_GRANTS": "tts, stt", "DIRECT_TOKEN_TTL": "120",
		"DIRECT_MINT_RATE": "4", "CORS_ORIGINS": "https://app.example.com, http://localhost:3000"})
	c, err = parseConfig(nil, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.DirectGrants, []token.Grant{token.TTS, token.STT}) ||
		c.DirectTokenTTL != 120 || c.DirectMintRate != 4 ||
		!slices.Equal(c.CORSOrigins, []string{"https://app.example.com", "http://localhost:3000"}) {
		t.Errorf("from the environment: %+v", c)
	}

	c, err = parseConfig([]string{"-direct-grants", "agent", "-direct-token-ttl", "2",
		"-direct-mint-rate", "1", "-cors-origins", ""}, env, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(c.DirectGrants, []token.Grant{token.Agent}) || c.DirectTokenTTL != 2 ||
		c.DirectMintRate != 1 || len(c.CORSOrigins) != 0 {
		t.Errorf("flags: %+v (an explicit empty -cors-origins turns CORS off)", c)
	}
}

func TestDirectModeAndCORSConfigErrors(t *testing.T) {
	tests := []struct {
		env  map[string]string
		want []string
	}{
		{map[string]string{"DIRECT_TOKEN_TTL": "121"}, []string{"DIRECT_TOKEN_TTL", "120"}},
		{map[string]string{"DIRECT_TOKEN_TTL": "3600"}, []string{"DIRECT_TOKEN_TTL", "cap"}},
		{map[string]string{"DIRECT_TOKEN_TTL": "1"}, []string{"DIRECT_TOKEN_TTL"}},
		{map[string]string{"DIRECT_TOKEN_TTL": "1m"}, []string{"DIRECT_TOKEN_TTL"}},
		{map[string]string{"DIRECT_GRANTS": "tts,admin"}, []string{"DIRECT_GRANTS", "admin"}},
		{map[string]string{"DIRECT_GRANTS": "TTS"}, []string{"DIRECT_GRANTS"}},
		{map[string]string{"DIRECT_GRANTS": "tts,tts"}, []string{"DIRECT_GRANTS", "twice"}},
		{map[string]string{"DIRECT_MINT_RATE": "0"}, []string{"DIRECT_MINT_RATE"}},
		{map[string]string{"CORS_ORIGINS": "*"}, []string{"CORS_ORIGINS", "*"}},
		{map[string]string{"CORS_ORIGINS": "https://app.example.com,null"},
			[]string{"CORS_ORIGINS", "null"}},
		{map[string]string{"CORS_ORIGINS": "https://app.example.com/"}, []string{"CORS_ORIGINS"}},
		{map[string]string{"CORS_ORIGINS": "app.example.com"}, []string{"CORS_ORIGINS"}},
		{map[string]string{"CORS_ORIGINS": "https://*.example.com"}, []string{"CORS_ORIGINS"}},
	}
	for _, tt := range tests {
		_, err := parseConfig(nil, envOf(tt.env), io.Discard)
		for _, w := range tt.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%v: error %v, want one mentioning %q", tt.env, err, w)
			}
		}
	}
}

// TestEveryFlagIsInTheREADME: each flag and its environment twin has a row in the
// README's Configuration table.
func TestEveryFlagIsInTheREADME(t *testing.T) {
	readme, err := os.ReadFile("../../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	var usage bytes.Buffer
	if _, err := parseConfig([]string{"-h"}, envOf(nil), &usage); err == nil {
		t.Fatal("-h did not stop parsing")
	}
	flagLine := regexp.MustCompile(`(?m)^  -([a-z-]+) .*\n\s+\t.*\benv ([A-Z_]+)`)
	matches := flagLine.FindAllStringSubmatch(usage.String(), -1)
	if len(matches) < 15 {
		t.Fatalf("found %d flags in the usage, expected every one:\n%s", len(matches), usage.String())
	}
	for _, m := range matches {
		row := fmt.Sprintf("| `%s` | `-%s` |", m[2], m[1])
		if !bytes.Contains(readme, []byte(row)) {
			t.Errorf("README has no row starting %s", row)
		}
	}
}

// TestDirectModeEndToEnd starts the real server with its emulator in direct mode: the
// page's token from POST /api/token/direct works on the emulator itself, over HTTP with a
// Bearer header and over a WebSocket with the access_token query, from another origin.
func TestDirectModeEndToEnd(t *testing.T) {
	base, _, stderr := started(t, map[string]string{"DEMO_PASSWORD": "CANARYPW",
		"DIRECT_GRANTS": "tts"})

	resp := call(t, base, "GET", "/api/info", "", nil)
	var info struct {
		Direct struct {
			Grants          []string `json:"grants"`
			Upstream        string   `json:"upstream"`
			CartesiaVersion string   `json:"cartesia_version"`
			MaxTTL          int      `json:"max_ttl"`
		} `json:"direct"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	d := info.Direct
	if !slices.Equal(d.Grants, []string{"tts"}) || !strings.HasPrefix(d.Upstream, "http://127.0.0.1:") ||
		d.Upstream == base || d.CartesiaVersion != "2026-03-01" || d.MaxTTL != 60 {
		t.Fatalf("info.direct %+v", d)
	}
	upHost := strings.TrimPrefix(d.Upstream, "http://")
	csp := resp.Header.Get("Content-Security-Policy")
	if !strings.Contains(csp, "connect-src 'self' "+d.Upstream+" ws://"+upHost+";") {
		t.Errorf("CSP %q does not let the page reach the emulator", csp)
	}

	login := call(t, base, "POST", "/api/login", `{"username":"demo","password":"CANARYPW"}`, nil)
	if login.StatusCode != 200 {
		t.Fatalf("login: %d", login.StatusCode)
	}
	cookies := login.Cookies()
	resp = call(t, base, "POST", "/api/token/direct", `{"grant":"tts"}`, cookies)
	var minted struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&minted); err != nil || resp.StatusCode != 200 ||
		minted.Token == "" || minted.ExpiresIn != 59 {
		t.Fatalf("direct mint: %d %+v %v", resp.StatusCode, minted, err)
	}
	if len(resp.Header.Values("Set-Cookie")) != 0 || resp.Header.Get("Pragma") != "no-cache" {
		t.Errorf("direct mint headers %v", resp.Header)
	}
	if r := call(t, base, "POST", "/api/token/direct", `{"grant":"stt"}`, cookies); r.StatusCode != 403 {
		t.Errorf("stt is not a direct grant here, got %d", r.StatusCode)
	}

	// A preflight to the emulator, as the browser sends before the call below.
	pre, _ := http.NewRequest("OPTIONS", d.Upstream+"/tts/bytes", nil)
	pre.Header.Set("Origin", base)
	pre.Header.Set("Access-Control-Request-Method", "POST")
	pre.Header.Set("Access-Control-Request-Headers", "authorization,cartesia-version,content-type")
	presp, err := recorded(base, http.DefaultTransport).RoundTrip(pre)
	if err != nil {
		t.Fatal(err)
	}
	presp.Body.Close()
	if presp.StatusCode != 204 || presp.Header.Get("Access-Control-Allow-Origin") != "*" ||
		presp.Header.Get("Access-Control-Allow-Methods") != "GET, POST" ||
		presp.Header.Get("Access-Control-Allow-Headers") !=
			"authorization, cartesia-version, content-type" ||
		presp.Header.Get("Access-Control-Max-Age") != "600" ||
		presp.Header.Get("Access-Control-Allow-Credentials") != "" {
		t.Errorf("preflight: %d %v", presp.StatusCode, presp.Header)
	}

	// The call itself, with the token and no cookie.
	tts := `{"model_id":"sonic-3","transcript":"Direct.",` +
		`"voice":{"mode":"id","id":"6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},` +
		`"output_format":{"container":"wav","encoding":"pcm_s16le","sample_rate":24000},` +
		`"language":"en"}`
	req, _ := http.NewRequest("POST", d.Upstream+"/tts/bytes", strings.NewReader(tts))
	req.Header.Set("Origin", base)
	req.Header.Set("Authorization", "Bearer "+minted.Token)
	req.Header.Set("Cartesia-Version", d.CartesiaVersion)
	req.Header.Set("Content-Type", "application/json")
	resp, err = recorded(base, http.DefaultTransport).RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.HasPrefix(body, []byte("RIFF")) ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("direct tts/bytes: %d %q %v", resp.StatusCode, body[:min(len(body), 200)],
			resp.Header)
	}

	// The WebSocket, with the token in the query as browsers must send it.
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	q := url.Values{"access_token": {minted.Token}, "cartesia_version": {d.CartesiaVersion}}
	conn, _, err := websocket.Dial(ctx, "ws://"+upHost+"/tts/websocket?"+q.Encode(),
		&websocket.DialOptions{HTTPHeader: http.Header{"Origin": {base}},
			HTTPClient: &http.Client{Transport: recorded(base, http.DefaultTransport)}})
	if err != nil {
		t.Fatalf("direct WebSocket: %v", err)
	}
	defer conn.CloseNow()
	msg := `{"context_id":"c1","model_id":"sonic-3","transcript":"Direct.",` +
		`"voice":{"mode":"id","id":"6ccbfb76-1fc6-48f7-b71d-91ac6298247b"},` +
		`"output_format":{"container":"raw","encoding":"pcm_s16le","sample_rate":16000},` +
		`"language":"en"}`
	if err := conn.Write(ctx, websocket.MessageText, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	var types []string
	for {
		_, data, err := conn.Read(ctx)
		if err != nil {
			t.Fatalf("WebSocket read after %v: %v", types, err)
		}
		var ev struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(data, &ev)
		types = append(types, ev.Type)
		if ev.Type == "done" || ev.Type == "error" {
			break
		}
	}
	if !slices.Contains(types, "chunk") || types[len(types)-1] != "done" {
		t.Errorf("WebSocket events %v, want chunks then done", types)
	}
	_ = conn.Close(websocket.StatusNormalClosure, "")

	if !strings.Contains(stderr.String(), `"level":"WARN","msg":"direct_mode"`) {
		t.Errorf("direct mode is not announced at start:\n%s", stderr.String())
	}
	if !strings.Contains(stderr.String(), `"msg":"token_issued_direct"`) {
		t.Errorf("no token_issued_direct event:\n%s", stderr.String())
	}
	if strings.Contains(stderr.String(), minted.Token) {
		t.Error("the direct token reached the log")
	}
}
