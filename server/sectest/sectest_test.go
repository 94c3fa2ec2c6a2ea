package sectest_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/sectest"
)

// spy is a testing.TB that collects Errorf calls instead of failing, so that the checks
// themselves can be shown to fail.
type spy struct {
	testing.TB
	mu   sync.Mutex
	errs []string
}

func (s *spy) Helper() {}

func (s *spy) Errorf(format string, args ...any) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, fmt.Sprintf(format, args...))
}

func (s *spy) failures() string { return strings.Join(s.errs, "\n") }

// call sends one request to the fake with a client that trusts it.
func call(t *testing.T, f *sectest.FakeCartesia, method, path, auth, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(method, f.URL()+path, strings.NewReader(body))
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	req.Header.Set("Cartesia-Version", "2026-03-01")
	req.Header.Set("Content-Type", "application/json")
	resp, err := f.Trust(&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func mint(t *testing.T, f *sectest.FakeCartesia, grant string) string {
	t.Helper()
	status, body := call(t, f, "POST", "/access-token", "Bearer "+sectest.CanaryKey,
		fmt.Sprintf(`{"grants":{%q:true},"expires_in":60}`, grant))
	if status != 200 {
		t.Fatalf("mint: %d %s", status, body)
	}
	tok, ok := strings.CutPrefix(strings.TrimSpace(body), `{"token":"`)
	if !ok {
		t.Fatalf("mint answered %s", body)
	}
	return strings.TrimSuffix(tok, `"}`)
}

func TestFakeMintsOnlyForTheCanaryKeyAndChecksGrants(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	if status, _ := call(t, f, "POST", "/access-token", "Bearer sk_car_other",
		`{"grants":{"tts":true},"expires_in":60}`); status != 401 {
		t.Errorf("mint with another key: %d, want 401", status)
	}
	tok := mint(t, f, "tts")
	if tok != sectest.TokenPrefix+"1" || len(f.Tokens()) != 1 {
		t.Fatalf("token %q, issued %v", tok, f.Tokens())
	}

	tests := []struct {
		path, auth string
		want       int
	}{
		{"/tts/bytes", "Bearer " + tok, 200},
		{"/tts/sse", "Bearer " + tok, 200},
		{"/stt", "Bearer " + tok, 403},
		{"/tts/bytes", "Bearer " + sectest.TokenPrefix + "99", 401},
		{"/tts/bytes", "Bearer " + sectest.CanaryKey, 401},
		{"/tts/bytes", "", 401},
	}
	for _, tt := range tests {
		status, body := call(t, f, "POST", tt.path, tt.auth, `{}`)
		if status != tt.want {
			t.Errorf("%s with %q: %d %s, want %d", tt.path, tt.auth, status, body, tt.want)
		}
		if tt.want != 200 && strings.Contains(body, sectest.TokenPrefix) {
			t.Errorf("a refusal repeats the token: %s", body)
		}
	}

	f.SetTokenLength(600)
	long := mint(t, f, "stt")
	if len(long) != 600 || !strings.HasPrefix(long, sectest.TokenPrefix) {
		t.Errorf("long token %d bytes: %.20s", len(long), long)
	}
	if status, _ := call(t, f, "POST", "/stt", "Bearer "+long, `{}`); status != 200 {
		t.Errorf("long token refused: %d", status)
	}
}

func TestIssuedTokensWorkAndThePlainFakeNeedsNoTrust(t *testing.T) {
	f := sectest.NewPlainFakeCartesia(t)
	if !strings.HasPrefix(f.URL(), "http://127.0.0.1:") || f.CertPool() != nil {
		t.Fatalf("plain fake at %s", f.URL())
	}
	tok := f.Issue("agent", "tts")
	if status, body := call(t, f, "POST", "/tts/bytes", "Bearer "+tok, "{}"); status != 200 {
		t.Errorf("issued token: %d %s", status, body)
	}
	if status, _ := call(t, f, "POST", "/stt", "Bearer "+tok, "{}"); status != 403 {
		t.Errorf("issued token on another grant: %d, want 403", status)
	}
	if len(f.RequestsTo(sectest.RouteMint)) != 0 || len(f.Tokens()) != 1 {
		t.Errorf("Issue made a request or lost the token: %v", f.Tokens())
	}
}

func TestFakeRecordsEverythingAndHooksReplaceRoutes(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	f.Handle(sectest.RouteTTSBytes, sectest.Status(402))
	f.Handle("GET /voices", sectest.Status(418))

	if status, _ := call(t, f, "POST", "/tts/bytes?x=1", "Bearer a", `{"t":"hi"}`); status != 402 {
		t.Errorf("hooked route: %d, want 402", status)
	}
	if status, _ := call(t, f, "GET", "/voices", "", ""); status != 418 {
		t.Errorf("added route: %d, want 418", status)
	}
	if status, _ := call(t, f, "PUT", "/tts/bytes", "", ""); status != 404 {
		t.Errorf("unknown method: %d, want 404", status)
	}
	if status, _ := call(t, f, "GET", "/admin", "", ""); status != 404 {
		t.Errorf("unknown route: %d, want 404", status)
	}

	got := f.RequestsTo(sectest.RouteTTSBytes)
	if len(got) != 1 || got[0].RawQuery != "x=1" || string(got[0].Body) != `{"t":"hi"}` ||
		got[0].Header.Get("Authorization") != "Bearer a" {
		t.Errorf("recorded %+v", got)
	}
	if n := len(f.Requests()); n != 4 {
		t.Errorf("%d requests recorded, want 4 (refused ones included)", n)
	}
	if n := len(f.RequestsTo("GET /agents/stream/{agent_id}")); n != 0 {
		t.Errorf("%d agent requests", n)
	}
}

func TestFakeTLSIsTrustedOnlyThroughTrust(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	resp, err := (&http.Client{Transport: &http.Transport{}}).Get(f.URL() + "/tts/bytes")
	if err == nil {
		resp.Body.Close()
		t.Fatal("a client with the system roots trusted the fake")
	}
	c := f.Trust(&http.Client{Transport: &http.Transport{
		TLSClientConfig: &tls.Config{MinVersion: tls.VersionTLS13}}})
	resp, err = c.Get(f.URL() + "/tts/bytes")
	if err != nil {
		t.Fatalf("trusted client: %v", err)
	}
	resp.Body.Close()
	if v := resp.TLS.Version; v != tls.VersionTLS13 {
		t.Errorf("Trust dropped the client's own TLS settings: version %x", v)
	}
}

func TestFakeWebSocketEchoNeedsAToken(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	rec := &sectest.Recorder{}
	client := f.Trust(rec.Client())
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	_, resp, err := websocket.Dial(ctx, f.URL()+"/stt/websocket", &websocket.DialOptions{
		HTTPClient: client, HTTPHeader: http.Header{"Cartesia-Version": {"2026-03-01"}}})
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("dial without a token: %v %v", err, resp)
	}

	tok := mint(t, f, "stt")
	c, _, err := websocket.Dial(ctx, f.URL()+"/stt/websocket", &websocket.DialOptions{
		HTTPClient: client, HTTPHeader: http.Header{"Cartesia-Version": {"2026-03-01"},
			"Authorization": {"Bearer " + tok}}})
	if err != nil {
		t.Fatalf("dial through the recorder: %v", err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "hi" {
		t.Errorf("echo %q %v", msg, err)
	}
	hs := f.RequestsTo(sectest.RouteSTTWebSocket)
	if len(hs) != 2 || !hs[1].WebSocket {
		t.Errorf("handshakes recorded: %+v", hs)
	}
	statuses := []int{}
	for _, r := range rec.Responses() {
		statuses = append(statuses, r.Status)
	}
	if fmt.Sprint(statuses) != "[401 101]" {
		t.Errorf("recorded statuses %v, want [401 101]", statuses)
	}
}

func TestHooksMisbehaveAsDocumented(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	tok := mint(t, f, "tts")
	f.Handle(sectest.RouteTTSBytes, sectest.EarlyHints(sectest.Hostile(
		f.Default(sectest.RouteTTSBytes))))

	var hints int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		hints++
		return nil
	}}
	req, _ := http.NewRequest("POST", f.URL()+"/tts/bytes", strings.NewReader("{}"))
	req = req.WithContext(httptrace.WithClientTrace(req.Context(), trace))
	req.Header.Set("Authorization", "Bearer "+tok)
	req.Header.Set("Cartesia-Version", "2026-03-01")
	resp, err := f.Trust(&http.Client{}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hints != 1 || resp.StatusCode != 200 || resp.Header.Get("X-Leak") != "1" ||
		resp.Header.Get("Access-Control-Allow-Origin") != "*" {
		t.Errorf("hints %d, status %d, headers %v", hints, resp.StatusCode, resp.Header)
	}

	f.Handle(sectest.RouteTTSSSE, sectest.EchoCredentials())
	_, body := call(t, f, "POST", "/tts/sse?k=v", "Bearer "+tok, "{}")
	if strings.Count(body, tok) < 2 || !strings.Contains(body, "k=v") {
		t.Errorf("echo body %s", body)
	}

	f.Handle(sectest.RouteTTSWebSocket, sectest.OversizeFrame(2<<20))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, f.URL()+"/tts/websocket",
		&websocket.DialOptions{HTTPClient: f.Trust(&http.Client{})})
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 20)
	if _, msg, err := c.Read(ctx); err != nil || len(msg) != 2<<20 {
		t.Errorf("oversize frame: %d bytes, %v", len(msg), err)
	}
}

func TestChecksPassOnACleanRun(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	mint(t, f, "tts")
	logs := &sectest.LogSink{}
	logs.Logger().Info("token_minted", "user", "alice", "grant", "tts")
	rec := &sectest.Recorder{}
	rec.Note("POST", "/api/token", 200, http.Header{"Set-Cookie": {
		"__Host-Http-vg_tts=v1.sealed-value-0123456789; Path=/; Secure; HttpOnly"}},
		[]byte(`{"grant":"tts"}`))

	s := &spy{TB: t}
	c := &sectest.Checks{Fake: f, Evil: sectest.NewEvil(t), Logs: logs, Responses: rec,
		Allowed: []string{sectest.RouteMint}}
	c.Verify(s)
	if len(s.errs) != 0 {
		t.Errorf("a clean run failed:\n%s", s.failures())
	}
	if n := len(logs.Matching(t, "token_minted", map[string]string{"grant": "tts"})); n != 1 {
		t.Errorf("Matching found %d events", n)
	}
}

// TestChecksCatchEachViolation shows that each post-condition fails when it should.
func TestChecksCatchEachViolation(t *testing.T) {
	sealed := "v1.sealed-value-0123456789"
	setCookie := http.Header{"Set-Cookie": {"__Host-Http-vg_tts=" + sealed + "; Path=/"}}
	tests := []struct {
		name string
		act  func(f *sectest.FakeCartesia, e *sectest.Evil, l *sectest.LogSink,
			r *sectest.Recorder)
		want string
	}{
		{"key in a log line", func(_ *sectest.FakeCartesia, _ *sectest.Evil, l *sectest.LogSink,
			_ *sectest.Recorder) {
			l.Logger().Warn("oops", "key", sectest.CanaryKey)
		}, "G1: log line 1 contains the API key"},
		{"token in a response header", func(_ *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, r *sectest.Recorder) {
			r.Note("POST", "/cartesia/tts/bytes", 401,
				http.Header{"Www-Authenticate": {"Bearer " + sectest.TokenPrefix + "1"}}, nil)
		}, "G1: header Www-Authenticate"},
		{"access_token= in a body", func(_ *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, r *sectest.Recorder) {
			r.Note("GET", "/x", 200, nil, []byte("wss://h/?access_token=abc"))
		}, `contains "access_token="`},
		{"sealed cookie value in a body", func(_ *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, r *sectest.Recorder) {
			r.Note("POST", "/api/token", 200, setCookie, nil)
			r.Note("GET", "/api/session", 200, nil, []byte(`{"echo":"`+sealed+`"}`))
		}, "the value of cookie __Host-Http-vg_tts"},
		{"sealed cookie value in a log", func(_ *sectest.FakeCartesia, _ *sectest.Evil,
			l *sectest.LogSink, r *sectest.Recorder) {
			r.Note("POST", "/api/token", 200, setCookie, nil)
			l.Logger().Info("x", "cookie", sealed)
		}, "G1: log line 1 contains the value of cookie"},
		{"token in a Set-Cookie", func(_ *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, r *sectest.Recorder) {
			r.Note("POST", "/api/token", 200, http.Header{"Set-Cookie": {
				"__Host-Http-vg_tts=" + sectest.TokenPrefix + "1; Path=/"}}, nil)
		}, "G1: header Set-Cookie"},
		{"two tokens from the direct route", func(_ *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, r *sectest.Recorder) {
			r.Note("POST", "/api/token/direct", 200, nil,
				[]byte(`{"token":"ctok_CANARY_1","old":"ctok_CANARY_2"}`))
		}, "carries 2 tokens"},
		{"token from another route", func(_ *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, r *sectest.Recorder) {
			r.Note("POST", "/api/token", 200, nil, []byte(`{"token":"ctok_CANARY_1"}`))
		}, "contains an access token"},
		{"key on a proxied route", func(f *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, _ *sectest.Recorder) {
			req, _ := http.NewRequest("POST", f.URL()+"/tts/bytes", nil)
			req.Header.Set("X-API-Key", sectest.CanaryKey)
			doQuiet(f, req)
		}, "G2: the fake received the API key on POST /tts/bytes"},
		{"key in the mint body", func(f *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, _ *sectest.Recorder) {
			req, _ := http.NewRequest("POST", f.URL()+"/access-token",
				strings.NewReader(`{"key":"`+sectest.CanaryKey+`"}`))
			doQuiet(f, req)
		}, "G2: the fake received the API key on POST /access-token"},
		{"route off the list", func(f *sectest.FakeCartesia, _ *sectest.Evil,
			_ *sectest.LogSink, _ *sectest.Recorder) {
			req, _ := http.NewRequest("GET", f.URL()+"/voices", nil)
			doQuiet(f, req)
		}, `G3: the fake received GET "/voices"`},
		{"evil reached", func(_ *sectest.FakeCartesia, e *sectest.Evil, _ *sectest.LogSink,
			_ *sectest.Recorder) {
			if c, err := net.Dial("tcp", e.Addr()); err == nil {
				_, _ = c.Read(make([]byte, 1)) // returns once the listener has counted it
				c.Close()
			}
		}, "G4: the evil listener accepted 1 connection"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, e := sectest.NewFakeCartesia(t), sectest.NewEvil(t)
			l, r := &sectest.LogSink{}, &sectest.Recorder{}
			tt.act(f, e, l, r)
			s := &spy{TB: t}
			(&sectest.Checks{Fake: f, Evil: e, Logs: l, Responses: r,
				Allowed: []string{sectest.RouteMint, sectest.RouteTTSBytes}}).Verify(s)
			if !strings.Contains(s.failures(), tt.want) {
				t.Errorf("failures:\n%s\nwant one containing %q", s.failures(), tt.want)
			}
		})
	}
}

// TestDirectRouteMayCarryOneToken: the one response allowed a token passes with one.
func TestDirectRouteMayCarryOneToken(t *testing.T) {
	r := &sectest.Recorder{}
	r.Note("POST", "/api/token/direct", 200, nil, []byte(`{"token":"ctok_CANARY_7"}`))
	s := &spy{TB: t}
	(&sectest.Checks{Responses: r}).Verify(s)
	if len(s.errs) != 0 {
		t.Errorf("one direct token failed:\n%s", s.failures())
	}
}

func TestRecorderKeepsWhatWasRead(t *testing.T) {
	f := sectest.NewFakeCartesia(t)
	f.Handle(sectest.RouteTTSBytes, sectest.Slow("audio/wav", []byte("ab"), 3, time.Millisecond))
	rec := &sectest.Recorder{}
	resp, err := f.Trust(rec.Client()).Post(f.URL()+"/tts/bytes", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	got := rec.Responses()
	if string(b) != "ababab" || len(got) != 1 || string(got[0].Body) != "ababab" ||
		got[0].Path != "/tts/bytes" || got[0].Status != 200 {
		t.Errorf("read %q, recorded %+v", b, got)
	}
}

func TestClockMovesOnlyWhenAdvanced(t *testing.T) {
	start := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	c := sectest.NewClock(start)
	if !c.Now().Equal(start) {
		t.Fatal("clock moved by itself")
	}
	c.Advance(time.Minute)
	if !c.Now().Equal(start.Add(time.Minute)) {
		t.Errorf("Now %v after a minute", c.Now())
	}
}

func TestAudioIsWhatTheFakeAnswers(t *testing.T) {
	f := sectest.NewPlainFakeCartesia(t)
	tok := f.Issue("tts")
	status, body := call(t, f, "POST", "/tts/bytes", "Bearer "+tok, "{}")
	if status != 200 || body != string(sectest.Audio()) || !bytes.HasPrefix(sectest.Audio(),
		[]byte("RIFF")) {
		t.Errorf("tts/bytes answered %d %q, Audio is %q", status, body, sectest.Audio())
	}
	a := sectest.Audio()
	a[0] = 'X'
	if sectest.Audio()[0] != 'R' {
		t.Error("Audio hands out the fake's own bytes")
	}
}

// TestTakeForgetsWhatItReturns: both Takes return what came since the last one, and
// the fake's Take leaves nothing for Requests or the checks.
func TestTakeForgetsWhatItReturns(t *testing.T) {
	logs := &sectest.LogSink{}
	logs.Logger().Info("one")
	if got := logs.Take(); !strings.Contains(got, `"msg":"one"`) {
		t.Errorf("first Take %q", got)
	}
	logs.Logger().Info("two")
	if got := logs.Take(); strings.Contains(got, "one") || !strings.Contains(got, "two") {
		t.Errorf("second Take %q", got)
	}
	if logs.String() != "" || logs.Take() != "" {
		t.Errorf("the sink kept %q", logs.String())
	}

	f := sectest.NewFakeCartesia(t)
	call(t, f, "GET", "/voices", "", "")
	if got := f.Take(); len(got) != 1 || got[0].Path != "/voices" {
		t.Errorf("first Take %+v", got)
	}
	call(t, f, "POST", "/tts/sse", "", "{}")
	if got := f.Take(); len(got) != 1 || got[0].Path != "/tts/sse" {
		t.Errorf("second Take %+v", got)
	}
	s := &spy{TB: t}
	(&sectest.Checks{Fake: f}).Verify(s)
	if len(f.Requests()) != 0 || len(s.errs) != 0 {
		t.Errorf("after Take: %d requests, failures %s", len(f.Requests()), s.failures())
	}
}

func TestCheckAnswerIsG1ForOneAnswer(t *testing.T) {
	clean := httptest.NewRecorder()
	clean.Header().Set("Set-Cookie", "__Host-Http-vg_tts=v1.sealed-value-0123456789; Path=/")
	clean.WriteHeader(200)
	_, _ = clean.WriteString(`{"grant":"tts"}`)
	s := &spy{TB: t}
	sectest.CheckAnswer(s, "POST", "/api/token", clean, `{"msg":"token_minted"}`+"\n")
	if len(s.errs) != 0 {
		t.Errorf("a clean answer failed:\n%s", s.failures())
	}

	tests := []struct {
		name, body, logs, want string
	}{
		{"token in the body", `{"t":"` + sectest.TokenPrefix + `3"}`, "",
			"G1: the body of the 200 answer to POST /api/token contains an access token"},
		{"key in the log", "{}", `{"key":"` + sectest.CanaryKey + `"}`,
			"G1: log line 1 contains the API key"},
		{"cookie value in the log", "{}", `{"c":"v1.sealed-value-0123456789"}`,
			"G1: log line 1 contains the value of cookie __Host-Http-vg_tts"},
	}
	for _, tt := range tests {
		rec := httptest.NewRecorder()
		rec.Header().Set("Set-Cookie", "__Host-Http-vg_tts=v1.sealed-value-0123456789; Path=/")
		_, _ = rec.WriteString(tt.body)
		s := &spy{TB: t}
		sectest.CheckAnswer(s, "POST", "/api/token", rec, tt.logs)
		if !strings.Contains(s.failures(), tt.want) {
			t.Errorf("%s: failures %q, want one containing %q", tt.name, s.failures(), tt.want)
		}
	}
}

// doQuiet sends req to the fake and drops the answer.
func doQuiet(f *sectest.FakeCartesia, req *http.Request) {
	resp, err := f.Trust(&http.Client{}).Do(req)
	if err == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}
