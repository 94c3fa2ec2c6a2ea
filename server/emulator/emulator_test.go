package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/sectest"
)

const (
	testKey     = "sk_car_test_0123456789abcdef"
	testVersion = "2026-03-01"
	testVoice   = "6ccbfb76-1fc6-48f7-b71d-91ac6298247b"
)

var uuidV4 = regexp.MustCompile(
	`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// syncBuffer collects log output written from server goroutines.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// harness is an emulator behind a loopback httptest server.
type harness struct {
	t     *testing.T
	emu   *Emulator
	srv   *httptest.Server
	clock *sectest.Clock
	logs  *syncBuffer
}

func newHarness(t *testing.T, pace float64) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		clock: sectest.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)),
		logs:  &syncBuffer{},
	}
	emu, err := New(Config{
		APIKeys: []string{"sk_car_other_key", testKey},
		Now:     h.clock.Now,
		Pace:    pace,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	h.emu = emu
	h.srv = httptest.NewServer(emu) // listens on 127.0.0.1
	t.Cleanup(h.srv.Close)
	return h
}

// request is one call to the emulator; nil headers mean "API key and current version".
type request struct {
	method  string
	path    string
	headers map[string]string
	body    string
}

type response struct {
	status int
	header http.Header
	body   []byte
	resp   *http.Response
}

func (h *harness) do(r request) response {
	h.t.Helper()
	if r.method == "" {
		r.method = http.MethodPost
	}
	if r.headers == nil {
		r.headers = map[string]string{"X-API-Key": testKey, "Cartesia-Version": testVersion}
	}
	req, err := http.NewRequest(r.method, h.srv.URL+r.path, strings.NewReader(r.body))
	if err != nil {
		h.t.Fatal(err)
	}
	for k, v := range r.headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")

	resp, err := h.srv.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: body, resp: resp}
}

// wantError checks a structured error: status, code, a message fragment, and that the
// request id in the body is the one in the header.
func (r response) wantError(t *testing.T, status int, code, fragment string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	var e errorBody
	if err := json.Unmarshal(r.body, &e); err != nil {
		t.Fatalf("error body is not JSON: %s", r.body)
	}
	if e.ErrorCode != code {
		t.Errorf("error_code %q, want %q (message %q)", e.ErrorCode, code, e.Message)
	}
	if !strings.Contains(e.Message, fragment) {
		t.Errorf("message %q does not mention %q", e.Message, fragment)
	}
	if e.Title == "" {
		t.Error("error has no title")
	}
	if id := r.header.Get("Cartesia-Request-Id"); e.RequestID != id || !uuidV4.MatchString(id) {
		t.Errorf("request_id %q, header %q; want the same UUID v4", e.RequestID, id)
	}
}

// mint returns an access token for the given grants JSON and lifetime.
func (h *harness) mint(grants string, expiresIn int) string {
	h.t.Helper()
	r := h.do(request{path: "/access-token",
		body: `{"grants":` + grants + `,"expires_in":` + itoa(expiresIn) + `}`})
	if r.status != http.StatusOK {
		h.t.Fatalf("mint: status %d: %s", r.status, r.body)
	}
	var out struct{ Token string }
	if err := json.Unmarshal(r.body, &out); err != nil || out.Token == "" {
		h.t.Fatalf("mint: body %s", r.body)
	}
	return out.Token
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func bearer(token string) map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Cartesia-Version": testVersion}
}

// ttsBody is a valid /tts/bytes body with the given transcript and output format.
func ttsBody(transcript, container, encoding string, rate int) string {
	b, _ := json.Marshal(map[string]any{
		"model_id":   "sonic-3",
		"transcript": transcript,
		"voice":      map[string]string{"mode": "id", "id": testVoice},
		"output_format": map[string]any{
			"container": container, "encoding": encoding, "sample_rate": rate,
		},
		"language": "en",
	})
	return string(b)
}

var smallTTS = ttsBody("Hi.", "raw", "pcm_s16le", 8000)

func TestNewRejectsBadConfig(t *testing.T) {
	tests := map[string]Config{
		"no keys":          {},
		"empty key":        {APIKeys: []string{testKey, ""}},
		"key with a space": {APIKeys: []string{"sk_car abc"}},
		"negative pace":    {APIKeys: []string{testKey}, Pace: -1},
	}
	for name, cfg := range tests {
		if _, err := New(cfg); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
}

func TestInfoAnswersWithoutCredentials(t *testing.T) {
	h := newHarness(t, 0)
	r := h.do(request{method: http.MethodGet, path: "/", headers: map[string]string{}})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var info map[string]any
	if err := json.Unmarshal(r.body, &info); err != nil {
		t.Fatal(err)
	}
	if len(info) != 2 || info["ok"] != true || info["version"] != Version {
		t.Errorf("body %s, want {\"ok\":true,\"version\":%q}", r.body, Version)
	}
}

func TestEveryResponseCarriesAFreshRequestID(t *testing.T) {
	h := newHarness(t, 0)
	requests := []request{
		{method: http.MethodGet, path: "/", headers: map[string]string{}},
		{path: "/nowhere"},
		{method: http.MethodGet, path: "/tts/bytes"},
		{path: "/tts/bytes", headers: map[string]string{"Cartesia-Version": testVersion}},
		{path: "/tts/bytes", body: "{"},
		{path: "/tts/bytes", body: smallTTS},
		{path: "/access-token", body: `{"grants":{"tts":true},"expires_in":60}`},
		{path: "/tts//bytes"}, // ServeMux's own redirect
	}
	seen := map[string]bool{}
	for _, req := range requests {
		r := h.do(req)
		id := r.header.Get("Cartesia-Request-Id")
		if !uuidV4.MatchString(id) {
			t.Errorf("%s %s: request id %q is not a UUID v4", req.method, req.path, id)
		}
		if seen[id] {
			t.Errorf("%s %s: request id %s reused", req.method, req.path, id)
		}
		seen[id] = true
	}
}

func TestUnknownRoutesAre404(t *testing.T) {
	h := newHarness(t, 0)
	for _, path := range []string{"/nope", "/tts/bytes/", "/v1/tts/bytes", "/tts", "/voices"} {
		r := h.do(request{path: path, body: smallTTS})
		r.wantError(t, http.StatusNotFound, codeNotFound, path)
	}
}

func TestWrongMethodIs405WithAllow(t *testing.T) {
	h := newHarness(t, 0)
	tests := []struct {
		method, path, allow string
	}{
		{http.MethodGet, "/tts/bytes", "POST"},
		{http.MethodPut, "/access-token", "POST"},
		{http.MethodPost, "/", "GET"},
		{http.MethodDelete, "/tts/bytes", "POST"},
	}
	for _, tt := range tests {
		r := h.do(request{method: tt.method, path: tt.path})
		r.wantError(t, http.StatusMethodNotAllowed, codeMethodNotAllowed, tt.method)
		if got := r.header.Get("Allow"); got != tt.allow {
			t.Errorf("%s %s: Allow %q, want %q", tt.method, tt.path, got, tt.allow)
		}
	}
}

func TestCartesiaVersionIsRequiredAndValidated(t *testing.T) {
	h := newHarness(t, 0)
	tests := []struct {
		name     string
		path     string
		header   string // Cartesia-Version header; "" = not sent
		query    string // cartesia_version query; "" = not sent
		status   int
		code     string
		fragment string
	}{
		{"missing on access-token", "/access-token", "", "", 400, codeVersionRequired, "mandatory"},
		{"missing on tts", "/tts/bytes", "", "", 400, codeVersionRequired, "mandatory"},
		{"not a date", "/tts/bytes", "latest", "", 400, codeInvalidVersion, "YYYY-MM-DD"},
		{"impossible date", "/tts/bytes", "2024-13-01", "", 400, codeInvalidVersion, "2024-13-01"},
		{"no dashes", "/tts/bytes", "20240610", "", 400, codeInvalidVersion, "YYYY-MM-DD"},
		{"query wins over a bad header", "/tts/bytes", "garbage", testVersion, 200, "", ""},
		{"bad query beats a good header", "/tts/bytes", testVersion, "yesterday", 400,
			codeInvalidVersion, "yesterday"},
		{"query alone", "/tts/bytes", "", "2024-06-10", 200, "", ""},
		{"future version", "/tts/bytes", "2030-01-01", "", 200, "", ""},
		{"oldest version", "/tts/bytes", "2024-06-10", "", 200, "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			headers := map[string]string{"X-API-Key": testKey}
			if tt.header != "" {
				headers["Cartesia-Version"] = tt.header
			}
			path := tt.path
			if tt.query != "" {
				path += "?cartesia_version=" + tt.query
			}
			body := smallTTS
			if tt.path == "/access-token" {
				body = `{"grants":{"tts":true},"expires_in":60}`
			}

			r := h.do(request{path: path, headers: headers, body: body})
			if tt.status == http.StatusOK {
				if r.status != http.StatusOK {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				return
			}
			r.wantError(t, tt.status, tt.code, tt.fragment)
		})
	}
}

func TestErrorShapeFollowsVersion(t *testing.T) {
	h := newHarness(t, 0)
	tests := []struct {
		version string
		legacy  bool
	}{
		{"2024-06-10", true},
		{"2025-11-04", true},
		{"2026-02-28", true},
		{"2026-03-01", false},
		{"2026-08-14", false},
	}
	for _, tt := range tests {
		r := h.do(request{path: "/tts/bytes", body: smallTTS,
			headers: map[string]string{"X-API-Key": "sk_car_wrong", "Cartesia-Version": tt.version}})
		if r.status != http.StatusUnauthorized {
			t.Fatalf("%s: status %d", tt.version, r.status)
		}

		if tt.legacy {
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
				t.Errorf("%s: Content-Type %q, want text/plain", tt.version, ct)
			}
			if !strings.HasPrefix(string(r.body), "Unauthorized: ") || json.Valid(r.body) {
				t.Errorf("%s: body %q, want \"Title: Message\" text", tt.version, r.body)
			}
			continue
		}
		r.wantError(t, http.StatusUnauthorized, codeUnauthorized, "X-API-Key")
		if ct := r.header.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q, want application/json", tt.version, ct)
		}
	}
}

func TestAPIKeyWorksInEitherHeader(t *testing.T) {
	h := newHarness(t, 0)
	headerSets := map[string]map[string]string{
		"X-API-Key":             {"X-API-Key": testKey},
		"Authorization: Bearer": {"Authorization": "Bearer " + testKey},
		"lower-case bearer":     {"Authorization": "bearer " + testKey},
		"second key":            {"X-API-Key": "sk_car_other_key"},
	}
	for name, headers := range headerSets {
		headers["Cartesia-Version"] = testVersion
		for _, req := range []request{
			{path: "/tts/bytes", headers: headers, body: smallTTS},
			{path: "/access-token", headers: headers, body: `{"grants":{"stt":true},"expires_in":5}`},
		} {
			if r := h.do(req); r.status != http.StatusOK {
				t.Errorf("%s on %s: status %d: %s", name, req.path, r.status, r.body)
			}
		}
	}
}

func TestBadCredentialsAre401(t *testing.T) {
	h := newHarness(t, 0)
	token := h.mint(`{"tts":true}`, 60)
	parts := strings.Split(token, ".")

	other := newHarness(t, 0)
	foreign := other.mint(`{"tts":true}`, 60)

	// A payload granting everything, under the genuine signature of another payload.
	forgedClaims := b64([]byte(`{"grants":{"tts":true,"stt":true,"agent":true},` +
		`"jti":"x","iat":1,"exp":9999999999,"iss":"https://api.cartesia.ai"}`))
	unsigned := b64([]byte(`{"alg":"none","kid":"x"}`)) + "." + parts[1] + "."

	tests := []struct {
		name     string
		headers  map[string]string
		fragment string
	}{
		{"nothing", map[string]string{}, "no credentials"},
		{"unknown key", map[string]string{"X-API-Key": "sk_car_nope"}, "X-API-Key"},
		{"unknown bearer key", map[string]string{"Authorization": "Bearer sk_car_nope"}, "Bearer"},
		{"basic auth", map[string]string{"Authorization": "Basic dXNlcjpwYXNz"}, "Bearer <"},
		{"empty bearer", map[string]string{"Authorization": "Bearer "}, "Bearer <"},
		{"token in X-API-Key", map[string]string{"X-API-Key": token}, "X-API-Key takes API keys only"},
		{"tampered signature", bearer(parts[0] + "." + parts[1] + "." + b64([]byte("x"))), "not valid"},
		{"tampered claims", bearer(parts[0] + "." + forgedClaims + "." + parts[2]), "not valid"},
		{"alg none", bearer(unsigned), "not valid"},
		{"another emulator's token", bearer(foreign), "not valid"},
		{"truncated token", bearer(token[:len(token)-5]), "not valid"},
		{"key prefix", map[string]string{"X-API-Key": testKey[:10]}, "not a valid API key"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.headers["Cartesia-Version"] = testVersion
			r := h.do(request{path: "/tts/bytes", headers: tt.headers, body: smallTTS})
			r.wantError(t, http.StatusUnauthorized, codeUnauthorized, tt.fragment)
		})
	}
}

func TestLogsHaveStableFieldsAndNoSecrets(t *testing.T) {
	h := newHarness(t, 0)
	token := h.mint(`{"tts":true}`, 60)
	h.do(request{path: "/tts/bytes?access_token=" + token + "&api_key=" + testKey,
		headers: bearer(token), body: smallTTS})
	h.do(request{path: "/tts/bytes", headers: map[string]string{
		"Authorization": "Bearer " + testKey, "Cartesia-Version": testVersion}, body: smallTTS})
	h.do(request{path: "/tts/bytes", headers: map[string]string{
		"X-API-Key": "sk_car_a_wrong_guess", "Cartesia-Version": testVersion}, body: smallTTS})

	logs := h.logs.String()
	secrets := []string{testKey, token, "sk_car_a_wrong_guess", "access_token=", "api_key="}
	for _, secret := range secrets {
		if strings.Contains(logs, secret) {
			t.Errorf("logs contain %q", secret)
		}
	}

	lines := strings.Split(strings.TrimSpace(logs), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d log lines for 4 requests:\n%s", len(lines), logs)
	}
	for _, line := range lines {
		var ev map[string]any
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			t.Fatalf("log line is not JSON: %s", line)
		}
		for _, key := range []string{"route", "status", "dur_ms", "request_id"} {
			if _, ok := ev[key]; !ok {
				t.Errorf("log line lacks %q: %s", key, line)
			}
		}
	}
	if !strings.Contains(lines[3], `"error_code":"unauthorized"`) ||
		!strings.Contains(lines[3], `"level":"WARN"`) {
		t.Errorf("rejection not logged as a warning with its code: %s", lines[3])
	}
}
