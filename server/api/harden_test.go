package api_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
)

// rawAnswer is what a raw-socket client saw: the status (0 for none), whether the answer
// said Connection: close (saysClose; net/http takes that header out of header), whether
// the server closed the connection after it, and how long the whole exchange took.
type rawAnswer struct {
	status    int
	header    http.Header
	body      string
	saysClose bool
	closed    bool
	elapsed   time.Duration
}

// rawExchange writes text on a fresh connection and waits up to within for an answer and
// for the server to close the connection.
func (h *harness) rawExchange(text string, within time.Duration) rawAnswer {
	h.t.Helper()
	conn, err := net.Dial("tcp", h.host)
	if err != nil {
		h.t.Fatal(err)
	}
	defer conn.Close()

	start := time.Now()
	if _, err := io.WriteString(conn, text); err != nil {
		h.t.Fatal(err)
	}
	_ = conn.SetReadDeadline(start.Add(within))
	br := bufio.NewReader(conn)
	res, err := http.ReadResponse(br, nil)
	if err != nil {
		return rawAnswer{elapsed: time.Since(start)}
	}
	b, _ := io.ReadAll(res.Body)
	_ = res.Body.Close()
	method, rest, _ := strings.Cut(text, " ")
	target, _, _ := strings.Cut(rest, " ")
	h.rec.Note(method, target, res.StatusCode, res.Header, b) // for G1

	_, err = br.ReadByte()
	return rawAnswer{status: res.StatusCode, header: res.Header, body: string(b),
		saysClose: res.Close, closed: errors.Is(err, io.EOF), elapsed: time.Since(start)}
}

// TestUnreadBodiesCannotHoldAConnection is the slow-body attack on every kind of route
// that answers without reading the body: the client announces a body and never sends it.
// net/http would wait for that body before (or after) answering; the server must instead
// answer and close within about its body timeout.
func TestUnreadBodiesCannotHoldAConnection(t *testing.T) {
	const timeout = 300 * time.Millisecond
	h := newHarness(t, func(c *api.Config) { c.BodyTimeout = timeout })
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)
	cookies := fmt.Sprintf("Cookie: %s=%s; %s=%s\r\n", sess.Name, sess.Value, tts.Name, tts.Value)
	page := "Host: " + h.host + "\r\nSec-Fetch-Site: same-origin\r\n"
	api := page + "X-CSRF: 1\r\nContent-Type: application/json\r\n"

	tests := []struct {
		name, head string
		status     int
	}{
		{"421 host", "POST /api/token HTTP/1.1\r\nHost: evil.example\r\nX-CSRF: 1\r\n" +
			"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{", 421},
		{"403 csrf", "POST /api/token HTTP/1.1\r\n" + page +
			"Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{", 403},
		{"415 media type", "POST /api/token HTTP/1.1\r\n" + page +
			"X-CSRF: 1\r\nContent-Type: text/plain\r\nContent-Length: 100\r\n\r\n{", 415},
		{"401 no session", "POST /api/token HTTP/1.1\r\n" + api +
			"Content-Length: 100\r\n\r\n{", 401},
		{"401 proxy no session", "POST /cartesia/tts/bytes HTTP/1.1\r\n" + api +
			"Content-Length: 100\r\n\r\n{", 401},
		{"401 upload no session", "POST /cartesia/stt HTTP/1.1\r\n" + page +
			"X-CSRF: 1\r\nContent-Type: multipart/form-data; boundary=b\r\n" +
			"Content-Length: 1000\r\n\r\n--b", 401},
		{"404", "POST /nowhere HTTP/1.1\r\n" + api + "Content-Length: 100\r\n\r\n{", 404},
		{"405", "PUT /api/login HTTP/1.1\r\n" + api + "Content-Length: 100\r\n\r\n{", 405},
		{"healthz", "GET /healthz HTTP/1.1\r\n" + page + "Content-Length: 100000\r\n\r\n", 200},
		{"healthz chunked", "GET /healthz HTTP/1.1\r\n" + page +
			"Transfer-Encoding: chunked\r\n\r\n5\r\nab", 200},
		{"static", "GET / HTTP/1.1\r\n" + page + "Content-Length: 100\r\n\r\n", 200},
		{"logout", "POST /api/logout HTTP/1.1\r\n" + api + "Content-Length: 100\r\n\r\n{", 204},
		{"body-reading route", "POST /api/token HTTP/1.1\r\n" + api + cookies +
			"Content-Length: 100\r\n\r\n{", 408},
		{"WebSocket upgrade with a body", "GET /cartesia/tts/websocket HTTP/1.1\r\n" + page +
			"Origin: " + h.origin + "\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n" +
			"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n" +
			cookies + "Content-Length: 100\r\n\r\n{", 400},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := h.rawExchange(tt.head, 10*timeout)
			if got.status != tt.status || !got.closed {
				t.Errorf("got status %d closed %v after %v, want %d and a closed connection",
					got.status, got.closed, got.elapsed, tt.status)
			}
			if got.elapsed > 5*timeout {
				t.Errorf("took %v, want about the %v body timeout at most", got.elapsed, timeout)
			}
		})
	}
}

// TestWebSocketOutlivesTheBodyTimeout checks that the body deadline never reaches a
// hijacked connection: a relay stays usable long after it.
func TestWebSocketOutlivesTheBodyTimeout(t *testing.T) {
	const timeout = 100 * time.Millisecond
	h := newHarness(t, func(c *api.Config) { c.BodyTimeout = timeout })
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)

	c, _, err := h.dialWS("/cartesia/tts/websocket", h.origin, sess, tts)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()

	// A real wait: the deadline under test is the connection's, on the real clock.
	time.Sleep(4 * timeout)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
		t.Fatalf("write after the body timeout: %v", err)
	}
	if _, msg, err := c.Read(ctx); err != nil || string(msg) != "still here" {
		t.Errorf("echo after the body timeout: %q %v", msg, err)
	}
}

func (h *harness) loginFrom(from, user, password string) resp {
	h.t.Helper()
	return h.do(req{path: "/api/login", from: from,
		body: fmt.Sprintf(`{"username":%q,"password":%q}`, user, password)})
}

// TestSignInAttackerCannotLockOutAnotherAddress: wrong passwords from one address use up
// that address's attempts for the name, never the name itself.
func TestSignInAttackerCannotLockOutAnotherAddress(t *testing.T) {
	h := newHarness(t) // the default limits

	for i := range 30 {
		r := h.loginFrom("127.0.0.2", "alice", "wrong")
		if want := 401; i >= 5 {
			if r.status != 429 || r.code() != "rate_limited" {
				t.Fatalf("attempt %d from the attacker: %d, want 429 once its 5 are spent",
					i+1, r.status)
			}
		} else if r.status != want {
			t.Fatalf("attempt %d from the attacker: %d, want %d", i+1, r.status, want)
		}
	}
	// The correct password from the attacking address is refused too: a brute force
	// that found it would not learn so.
	if r := h.loginFrom("127.0.0.2", "alice", "alice-pw"); r.status != 429 {
		t.Errorf("correct password from the attacking address: %d, want 429", r.status)
	}

	if r := h.loginFrom("127.0.0.3", "alice", "alice-pw"); r.status != 200 {
		t.Errorf("alice from her own, new address: %d %s, want 200", r.status, r.body)
	}
}

// TestDistributedGuessingIsThrottledButKnownAddressesGetIn: many addresses together empty
// the per-name bucket. New addresses are then throttled for that name, while an address
// that has signed in as the user before is still checked (throttling, not lockout).
func TestDistributedGuessingIsThrottledButKnownAddressesGetIn(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.LoginPairLimit = api.RateLimit{Every: time.Minute, Burst: 3}
		c.LoginUserLimit = api.RateLimit{Every: time.Minute, Burst: 5}
	})
	if r := h.loginFrom("127.0.0.9", "alice", "alice-pw"); r.status != 200 {
		t.Fatalf("alice's first sign-in: %d", r.status)
	}

	for i := 20; i < 24; i++ {
		for range 2 {
			h.loginFrom(fmt.Sprintf("127.0.0.%d", i), "alice", "wrong")
		}
	}
	r := h.loginFrom("127.0.0.30", "alice", "wrong")
	if r.status != 429 || r.code() != "rate_limited" || r.header.Get("Retry-After") == "" {
		t.Errorf("a fresh address once the name's bucket is empty: %d %s", r.status, r.body)
	}
	if r := h.loginFrom("127.0.0.31", "alice", "alice-pw"); r.status != 429 {
		t.Errorf("correct password from an unknown address under attack: %d, want 429",
			r.status)
	}
	if r := h.loginFrom("127.0.0.9", "alice", "alice-pw"); r.status != 200 {
		t.Errorf("alice from her known address under attack: %d %s, want 200", r.status, r.body)
	}
	if r := h.loginFrom("127.0.0.9", "alice", "wrong"); r.status != 401 {
		t.Errorf("a wrong password from the known address: %d, want 401", r.status)
	}
	if r := h.loginFrom("127.0.0.30", "bob", "bob-pw"); r.status != 200 {
		t.Errorf("another name is not throttled: %d", r.status)
	}

	h.clk.Advance(10 * time.Minute)
	if r := h.loginFrom("127.0.0.31", "alice", "alice-pw"); r.status != 200 {
		t.Errorf("after the refill: %d", r.status)
	}
}

// TestMalformedSignInsSpendNoLimiterSlot: a body that is not a sign-in is refused before
// any rate-limit bucket is touched, so a flood of junk neither fills the limiter tables
// nor uses up the address's attempts.
func TestMalformedSignInsSpendNoLimiterSlot(t *testing.T) {
	h := newHarness(t, func(c *api.Config) {
		c.LoginIPLimit = api.RateLimit{Every: time.Minute, Burst: 3}
	})
	for _, body := range []string{`{`, `[]`, `{"username":1}`, `{"username":"a"}`,
		`{"username":"alice","password":""}`, `{"username":"alice","password":"x","x":1}`} {
		for range 3 {
			if r := h.do(req{path: "/api/login", body: body}); r.status != 400 {
				t.Fatalf("%s: %d, want 400", body, r.status)
			}
		}
	}
	if r := h.loginFrom("", "alice", "alice-pw"); r.status != 200 {
		t.Errorf("sign-in after junk: %d %s, want 200", r.status, r.body)
	}
}

// TestRequestBodiesMatchKeysExactly: encoding/json matches names case-insensitively (with
// Unicode folding), which would let a key the duplicate check does not recognise decide
// a field. Every key must be exactly one of ours.
func TestRequestBodiesMatchKeysExactly(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")

	tests := []struct{ path, body string }{
		{"/api/token", `{"Grant":"stt","grant":"tts"}`},
		{"/api/token", `{"grant":"tts","Grant":"stt"}`},
		{"/api/token", `{"GRANT":"tts"}`},
		{"/api/token", `{"grant":"tts","EXPIRES_IN":3599}`},
		{"/api/token", `{"grant":"tts","expireſ_in":3599}`}, // U+017F folds to s
		{"/api/login", `{"Username":"alice","password":"alice-pw"}`},
		{"/api/login", `{"username":"alice","PASSWORD":"x","password":"alice-pw"}`},
	}
	for _, tt := range tests {
		r := h.do(req{path: tt.path, body: tt.body, cookies: []*http.Cookie{sess}})
		if r.status != 400 || r.code() != "bad_request" {
			t.Errorf("%s %s: %d %s, want 400 bad_request", tt.path, tt.body, r.status, r.body)
		}
		if r.cookie(t, session.CookieName) != nil {
			t.Errorf("%s %s signed in", tt.path, tt.body)
		}
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 0 {
		t.Errorf("%d tokens were minted", n)
	}
}

// TestDecodeErrorsNameFieldsNotGoTypes: a type error names the field and what it should
// be, in the API's words, never Go's struct or type names.
func TestDecodeErrorsNameFieldsNotGoTypes(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")

	tests := []struct{ path, body, want string }{
		{"/api/token", `{"grant":5}`, `the field "grant" must be a string`},
		{"/api/token", `{"grant":{"a":1}}`, `the field "grant" must be a string`},
		{"/api/login", `{"username":true,"password":"x"}`, `the field "username" must be a string`},
		{"/api/token", `{"grant":"tts"`, "the request body is not valid JSON"},
		{"/api/token", `{"grant":"tts"} {}`, "invalid request body: data after the JSON object"},
		{"/api/token", `{"scope":"tts"}`, `unknown field "scope"`},
	}
	for _, tt := range tests {
		r := h.do(req{path: tt.path, body: tt.body, cookies: []*http.Cookie{sess}})
		var msg string
		if r.status == 400 {
			msg = messageOf(r.body)
		}
		if msg != tt.want {
			t.Errorf("%s: %d message %q, want %q", tt.body, r.status, msg, tt.want)
		}
		for _, leak := range []string{"Go ", "tokenRequest", "struct", "json:", "*string"} {
			if strings.Contains(r.body, leak) {
				t.Errorf("%s: the answer mentions %q: %s", tt.body, leak, r.body)
			}
		}
	}
}

// TestLogoutClearsSiteCookies: besides expiring each cookie, logout asks the browser to
// drop every cookie of the origin.
func TestLogoutClearsSiteCookies(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	r := h.do(req{path: "/api/logout", cookies: []*http.Cookie{sess}})
	if got := r.header.Get("Clear-Site-Data"); got != `"cookies"` {
		t.Errorf(`Clear-Site-Data %q, want "cookies"`, got)
	}
}

// TestRepeatedCSRFHeadersAreRefused: a header the checks read must appear once; with two,
// the check and a later reader could disagree about which one counts.
func TestRepeatedCSRFHeadersAreRefused(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	noFetchMeta := map[string]string{"Sec-Fetch-Site": ""}

	tests := []struct {
		name   string
		header map[string]string
		extra  http.Header
	}{
		{"X-CSRF twice", nil, http.Header{"X-Csrf": {"2"}}},
		{"X-CSRF twice, both 1", nil, http.Header{"X-Csrf": {"1"}}},
		{"Origin twice", map[string]string{"Sec-Fetch-Site": "", "Origin": h.origin},
			http.Header{"Origin": {"https://evil.example"}}},
		{"Origin twice, both ours", map[string]string{"Sec-Fetch-Site": "", "Origin": h.origin},
			http.Header{"Origin": {h.origin}}},
		{"Sec-Fetch-Site twice", nil, http.Header{"Sec-Fetch-Site": {"cross-site"}}},
		{"Sec-Fetch-Site twice, no default", noFetchMeta,
			http.Header{"Sec-Fetch-Site": {"same-origin", "same-origin"}}},
		{"Sec-Fetch-Mode twice", nil, http.Header{"Sec-Fetch-Mode": {"cors", "navigate"}}},
	}
	for _, tt := range tests {
		r := h.do(req{path: "/api/token", body: `{"grant":"tts"}`, header: tt.header,
			extra: tt.extra, cookies: []*http.Cookie{sess}})
		if r.status != 403 || r.code() != "csrf_rejected" {
			t.Errorf("%s: %d %s, want 403 csrf_rejected", tt.name, r.status, r.body)
		}
	}
	if n := len(h.fake.RequestsTo(sectest.RouteMint)); n != 0 {
		t.Errorf("%d mints happened", n)
	}
}

// messageOf is the message of a JSON error body.
func messageOf(body string) string {
	var b struct {
		Error struct{ Message string } `json:"error"`
	}
	_ = json.Unmarshal([]byte(body), &b)
	return b.Error.Message
}

// TestRepeatedContentTypeIsRefused: the media-type check reads one value, and the proxy
// would forward every value, so upstream could parse the body as a type nobody checked
// (second attack round).
func TestRepeatedContentTypeIsRefused(t *testing.T) {
	h := newHarness(t)
	sess := h.login("alice", "alice-pw")
	_, tts := h.mint(sess, `{"grant":"tts"}`)

	for _, path := range []string{"/api/token", "/cartesia/tts/bytes", "/cartesia/tts/sse"} {
		r := h.do(req{path: path, body: `{"grant":"tts"}`,
			extra: http.Header{"Content-Type": {"text/plain"}}, cookies: []*http.Cookie{sess, tts}})
		if r.status != http.StatusUnsupportedMediaType || r.code() != "unsupported_media_type" {
			t.Errorf("%s with two Content-Types: %d %s, want 415", path, r.status, r.body)
		}
	}
	if n := len(h.fake.RequestsTo(sectest.RouteTTSBytes)) +
		len(h.fake.RequestsTo(sectest.RouteTTSSSE)); n != 0 {
		t.Errorf("upstream saw %d calls", n)
	}
}
