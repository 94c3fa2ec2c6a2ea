//go:build js && wasm

package client

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/wasm/jsx"
)

// request is what the fake fetch saw.
type request struct {
	method, url string
	credentials string
	header      map[string]string
	body        string
}

// answer is what the fake fetch replies; status 0 means a network failure.
type answer struct {
	status int
	body   string
	header map[string]string
}

// fakeFetch replaces globalThis.fetch for one test with a Go handler, so the client's
// requests and its handling of answers can be checked under Node without a server.
type fakeFetch struct {
	mu       sync.Mutex
	requests []request
}

func installFetch(t *testing.T, handle func(r request) answer) *fakeFetch {
	t.Helper()
	f := &fakeFetch{}
	global := safejs.Global()
	old, err := global.Get("fetch")
	if err != nil {
		t.Fatal(err)
	}

	fn, err := safejs.FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		r := readRequest(t, args)
		f.mu.Lock()
		f.requests = append(f.requests, r)
		f.mu.Unlock()
		return respond(t, handle(r))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := global.Set("fetch", fn); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = global.Set("fetch", old)
		fn.Release()
	})
	return f
}

func readRequest(t *testing.T, args []safejs.Value) request {
	url, _ := args[0].String()
	init := args[1]
	method, _ := mustGet(t, init, "method").String()
	credentials, _ := mustGet(t, init, "credentials").String()
	r := request{method: method, url: url, header: map[string]string{}, credentials: credentials}

	headers := mustGet(t, init, "headers")
	object, _ := safejs.Global().Get("Object")
	keys, _ := object.Call("keys", headers)
	n, _ := keys.Length()
	for i := range n {
		k, _ := keys.Index(i)
		name, _ := k.String()
		v, _ := mustGet(t, headers, name).String()
		r.header[name] = v
	}

	if payload := mustGet(t, init, "body"); !payload.IsUndefined() {
		b, err := jsx.Bytes(payload)
		if err != nil {
			t.Errorf("request body: %v", err)
		}
		r.body = string(b)
	}
	return r
}

func respond(t *testing.T, a answer) any {
	promise, _ := safejs.Global().Get("Promise")
	if a.status == 0 {
		typeError, _ := safejs.Global().Get("TypeError")
		e, _ := typeError.New("Failed to fetch")
		p, _ := promise.Call("reject", e)
		return p
	}

	headers := map[string]any{"Content-Type": "application/json"}
	for k, v := range a.header {
		headers[k] = v
	}
	var payload any
	if a.status != 204 {
		payload = a.body
	}
	ctor, _ := safejs.Global().Get("Response")
	resp, err := ctor.New(payload, map[string]any{"status": a.status, "headers": headers})
	if err != nil {
		t.Errorf("new Response: %v", err)
	}
	p, _ := promise.Call("resolve", resp)
	return p
}

func mustGet(t *testing.T, v safejs.Value, prop string) safejs.Value {
	p, err := v.Get(prop)
	if err != nil {
		t.Errorf("get %s: %v", prop, err)
	}
	return p
}

func (f *fakeFetch) count(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, r := range f.requests {
		if r.url == path {
			n++
		}
	}
	return n
}

func (f *fakeFetch) all() []request {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]request(nil), f.requests...)
}

// infoAnswer is GET /api/info of a server without direct mode.
const infoAnswer = `{"upstream":"emulator","grants":["tts","stt","agent"]}`

const tokenAnswer = `{"grant":"tts","expires_in":300,"expires_at":1772366700000,` +
	`"server_time":1772366400000}`

func errorAnswer(status int, code string) answer {
	return answer{status: status, body: fmt.Sprintf(`{"error":{"code":%q,"message":"m"}}`, code)}
}

// server answers /api/token with a token and /cartesia/tts/bytes from the given list, the
// last entry repeating.
func server(tts ...answer) func(request) answer {
	var mu sync.Mutex
	return func(r request) answer {
		switch r.url {
		case "/api/info":
			return answer{status: 200, body: infoAnswer}
		case "/api/token":
			return answer{status: 200, body: tokenAnswer}
		case "/api/logout":
			return answer{status: 204}
		case "/cartesia/tts/bytes":
			mu.Lock()
			defer mu.Unlock()
			a := tts[0]
			if len(tts) > 1 {
				tts = tts[1:]
			}
			return a
		}
		return errorAnswer(404, "not_found")
	}
}

func newClient(t *testing.T, events *[]Event) *Client {
	var mu sync.Mutex
	c := New(Options{NoProactive: true, OnEvent: func(ev Event) {
		mu.Lock()
		defer mu.Unlock()
		if events != nil {
			*events = append(*events, ev)
		}
	}})
	t.Cleanup(c.Close)
	return c
}

var audio = answer{status: 200, body: "AUDIO",
	header: map[string]string{"Content-Type": "audio/wav"}}

func TestTTSBytesRetriesOnceAfterRejectedToken(t *testing.T) {
	for _, code := range []string{"token_expired", "no_token"} {
		t.Run(code, func(t *testing.T) {
			f := installFetch(t, server(errorAnswer(401, code), audio))
			c := newClient(t, nil)

			got, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))

			if err != nil || string(got) != "AUDIO" {
				t.Fatalf("TTSBytes = %q, %v; want AUDIO", got, err)
			}
			if f.count("/api/token") != 2 || f.count("/cartesia/tts/bytes") != 2 {
				t.Fatalf("token calls %d, tts calls %d; want 2 and 2", f.count("/api/token"),
					f.count("/cartesia/tts/bytes"))
			}
		})
	}
}

func TestTTSBytesSecondRejectionIsTerminal(t *testing.T) {
	f := installFetch(t, server(errorAnswer(401, "token_expired")))
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))

	var e *Error
	if !errors.As(err, &e) || e.Code != "token_expired" || e.Status != 401 || e.Grant != "tts" {
		t.Fatalf("error = %v, want token_expired 401 for grant tts", err)
	}
	if f.count("/cartesia/tts/bytes") != 2 || f.count("/api/token") != 2 {
		t.Fatalf("tts calls %d, token calls %d; want exactly one retry",
			f.count("/cartesia/tts/bytes"), f.count("/api/token"))
	}
}

func TestTTSBytesDoesNotRetryOtherRejections(t *testing.T) {
	cases := []struct {
		status int
		code   string
	}{
		{401, "no_session"},
		{403, "csrf_rejected"},
		{403, "grant_forbidden"},
		{413, "body_too_large"},
	}
	for _, tc := range cases {
		t.Run(tc.code, func(t *testing.T) {
			f := installFetch(t, server(errorAnswer(tc.status, tc.code)))
			c := newClient(t, nil)

			_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))

			var e *Error
			if !errors.As(err, &e) || e.Code != tc.code || e.Status != tc.status {
				t.Fatalf("error = %v, want %s %d", err, tc.code, tc.status)
			}
			if n := f.count("/cartesia/tts/bytes"); n != 1 {
				t.Fatalf("tts calls = %d, want 1", n)
			}
		})
	}
}

func TestEveryCallSendsCSRFAndJSONHeaders(t *testing.T) {
	f := installFetch(t, server(audio))
	c := newClient(t, nil)

	if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	_, _ = c.Session(context.Background())

	for _, r := range f.all() {
		if r.header["X-CSRF"] != "1" {
			t.Errorf("%s %s without X-CSRF: 1", r.method, r.url)
		}
		if r.body != "" && r.header["Content-Type"] != "application/json" {
			t.Errorf("%s %s body without Content-Type application/json", r.method, r.url)
		}
	}
	reqs := f.all()
	if reqs[0].url != "/api/info" {
		t.Fatalf("first request = %+v, want the direct-mode offer", reqs[0])
	}
	if reqs[1].url != "/api/token" || reqs[1].body != `{"grant":"tts"}` {
		t.Fatalf("second request = %+v, want the tts token refresh", reqs[1])
	}
}

func TestUpstreamErrorKeepsCartesiasDetails(t *testing.T) {
	installFetch(t, server(answer{status: 502, body: `{"error":{"code":"upstream_error",` +
		`"message":"m","upstream":{"status":500,"error_code":"boom","title":"T","request_id":"r-1"}}}`}))
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))

	var e *Error
	if !errors.As(err, &e) || e.Upstream == nil || e.Upstream.RequestID != "r-1" ||
		e.Upstream.Status != 500 || e.Status != 502 {
		t.Fatalf("error = %#v, want upstream details with request id r-1", err)
	}
}

func TestRefreshFailureReachesTheCallerTyped(t *testing.T) {
	installFetch(t, func(r request) answer {
		return answer{status: 429, body: `{"error":{"code":"rate_limited","message":"slow down"}}`,
			header: map[string]string{"Retry-After": "7"}}
	})
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))

	var e *Error
	if !errors.As(err, &e) || e.Code != "rate_limited" || e.Status != 429 ||
		e.RetryAfter.Seconds() != 7 || e.Grant != "tts" {
		t.Fatalf("error = %#v, want rate_limited 429 retry-after 7s for tts", err)
	}
}

func TestNetworkFailureIsTyped(t *testing.T) {
	installFetch(t, func(request) answer { return answer{} })
	c := newClient(t, nil)

	_, err := c.Info(context.Background())

	var e *Error
	if !errors.As(err, &e) || e.Code != CodeNetworkError || e.Status != 0 {
		t.Fatalf("error = %v, want network_error", err)
	}
}

func TestSessionEndsOnLogoutAndOnNoSession(t *testing.T) {
	installFetch(t, server(audio))
	var events []Event
	c := newClient(t, &events)
	if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
		t.Fatal(err)
	}

	if err := c.Logout(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Tokens().State("tts"); st.Valid || st.Refreshes != 0 {
		t.Fatalf("tts state after logout = %+v, want reset", st)
	}

	installFetch(t, func(request) answer { return errorAnswer(401, "no_session") })
	_, _ = c.Login(context.Background(), "u", "p") // 401 invalid_credentials would not end it
	_, _ = c.Session(context.Background())

	var ends []string
	for _, ev := range events {
		if ev.Type == EventSessionEnd {
			ends = append(ends, ev.Reason)
		}
	}
	// The no_session answers after logout do not repeat the event: the session had ended.
	if strings.Join(ends, ",") != "logout" {
		t.Fatalf("sessionend reasons = %v, want [logout]", ends)
	}
}

func TestNoSessionEndsAnActiveSession(t *testing.T) {
	installFetch(t, server(audio))
	var events []Event
	c := newClient(t, &events)
	if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
		t.Fatal(err)
	}

	installFetch(t, func(request) answer { return errorAnswer(401, "no_session") })
	_, err := c.Session(context.Background())

	var e *Error
	if !errors.As(err, &e) || e.Code != "no_session" {
		t.Fatalf("error = %v, want no_session", err)
	}
	if len(events) == 0 || events[len(events)-1].Type != EventSessionEnd ||
		events[len(events)-1].Reason != "no_session" {
		t.Fatalf("last event = %+v, want sessionend no_session", events[len(events)-1])
	}
	if c.Tokens().State("tts").Valid {
		t.Fatal("tts token still valid after the session ended")
	}
}

func TestConcurrentCallsShareOneRefresh(t *testing.T) {
	f := installFetch(t, server(audio))
	c := newClient(t, nil)

	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()

	if n := f.count("/api/token"); n != 1 {
		t.Fatalf("token calls = %d, want 1", n)
	}
}

func TestInvalidRequestIsRejectedBeforeAnyCall(t *testing.T) {
	f := installFetch(t, server(audio))
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":`))

	var e *Error
	if !errors.As(err, &e) || e.Code != CodeInvalidRequest {
		t.Fatalf("error = %v, want invalid_request", err)
	}
	if len(f.all()) != 0 {
		t.Fatalf("requests = %d, want none", len(f.all()))
	}
}

func jsonBody(s string) []byte { return []byte(s) }
