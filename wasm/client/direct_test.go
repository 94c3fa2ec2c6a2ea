//go:build js && wasm

package client

import (
	"context"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxgate/voxgate/wasm/cartesia"
)

// upstream is where the fake direct offer points. Nothing listens there: the fake fetch
// answers every request without a network.
const upstream = "http://127.0.0.1:9"

// directServer plays the voxgate server with direct mode on for tts, and the upstream
// itself. Each direct mint answers a new token; upstream answers come from tts in turn.
func directServer(tts ...answer) func(request) answer {
	var mu sync.Mutex
	n := 0
	return func(r request) answer {
		mu.Lock()
		defer mu.Unlock()
		switch r.url {
		case "/api/info":
			return answer{status: 200, body: `{"upstream":"emulator","grants":["tts","stt",` +
				`"agent"],"direct":{"grants":["tts"],"upstream":"` + upstream + `",` +
				`"cartesia_version":"2025-04-16","max_ttl":60}}`}
		case "/api/token/direct":
			n++
			return answer{status: 200, body: fmt.Sprintf(`{"token":"tok-%d","grant":"tts",`+
				`"grants":["tts"],"expires_in":59,"expires_at":1772366459000,`+
				`"server_time":1772366400000}`, n)}
		case "/api/token":
			return answer{status: 200, body: tokenAnswer}
		case upstream + "/tts/bytes":
			a := tts[0]
			if len(tts) > 1 {
				tts = tts[1:]
			}
			return a
		}
		return errorAnswer(404, "not_found")
	}
}

func TestDirectGrantCallsTheUpstreamWithABearerToken(t *testing.T) {
	f := installFetch(t, directServer(audio))
	var events []Event
	c := newClient(t, &events)

	got, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))
	if err != nil || string(got) != "AUDIO" {
		t.Fatalf("TTSBytes = %q, %v; want AUDIO", got, err)
	}

	var call *request
	for _, r := range f.all() {
		if r.url == upstream+"/tts/bytes" {
			call = &r
		}
		if r.url == "/cartesia/tts/bytes" || r.url == "/api/token" {
			t.Errorf("direct grant used the proxy: %s %s", r.method, r.url)
		}
	}
	if call == nil {
		t.Fatalf("no call reached the upstream: %+v", f.all())
	}
	if call.header["Authorization"] != "Bearer tok-1" || call.header["Cartesia-Version"] !=
		"2025-04-16" || call.header["X-CSRF"] != "" || call.credentials != "omit" {
		t.Fatalf("upstream call = %+v, want Bearer tok-1, the version, no X-CSRF, "+
			"credentials omit", *call)
	}

	st := c.Tokens().State(GrantTTS)
	if !st.Valid || !st.Direct {
		t.Fatalf("state = %+v, want a valid direct token", st)
	}
	for _, ev := range events {
		if s := fmt.Sprintf("%+v %#v", ev, ev); strings.Contains(s, "tok-") {
			t.Fatalf("event shows the token: %s", s)
		}
	}
}

func TestDirectRejectedTokenIsReplacedOnce(t *testing.T) {
	rejected := answer{status: 401, body: `{"error_code":"token_expired",` +
		`"message":"token tok-1 has expired"}`}
	f := installFetch(t, directServer(rejected, audio))
	c := newClient(t, nil)

	if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
		t.Fatalf("TTSBytes after one rejection: %v", err)
	}
	if n := f.count("/api/token/direct"); n != 2 {
		t.Fatalf("direct mints = %d, want 2 (one retry)", n)
	}
	last := f.all()[len(f.all())-1]
	if last.header["Authorization"] != "Bearer tok-2" {
		t.Fatalf("retry sent %q, want the new token", last.header["Authorization"])
	}
}

func TestDirectUpstreamErrorNeverRepeatsTheToken(t *testing.T) {
	echo := answer{status: 400, body: `{"error_code":"bad","title":"Bad tok-1",` +
		`"message":"you sent Bearer tok-1 (` + url.QueryEscape("tok-1") + `)"}`}
	installFetch(t, directServer(echo))
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUpstreamError || e.Status != 400 ||
		e.Upstream == nil || e.Upstream.ErrorCode != "bad" {
		t.Fatalf("error = %#v, want upstream_error 400 with Cartesia's code", err)
	}
	if s := fmt.Sprintf("%v %+v %+v", e, *e, *e.Upstream); strings.Contains(s, "tok-1") {
		t.Fatalf("error repeats the token: %s", s)
	}
}

func TestDirectAnswerWithoutTokenIsABadResponse(t *testing.T) {
	installFetch(t, func(r request) answer {
		if r.url == "/api/token/direct" {
			return answer{status: 200, body: tokenAnswer}
		}
		return directServer(audio)(r)
	})
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeBadResponse {
		t.Fatalf("error = %v, want bad_response", err)
	}
}

func TestDirectOffAndUnofferedGrantsUseTheProxy(t *testing.T) {
	f := installFetch(t, func(r request) answer {
		if r.url == "/cartesia/tts/bytes" {
			return audio
		}
		return directServer(audio)(r)
	})
	c := New(Options{NoProactive: true, Direct: DirectOff})
	t.Cleanup(c.Close)

	if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
		t.Fatal(err)
	}
	if f.count("/api/token/direct") != 0 || f.count("/api/info") != 0 ||
		f.count("/cartesia/tts/bytes") != 1 {
		t.Fatalf("requests = %+v, want the proxy only", f.all())
	}
	if c.Tokens().State(GrantTTS).Direct {
		t.Fatal("a proxy token reports direct")
	}

	// With direct mode on, a grant the server does not offer goes through the proxy too.
	c2 := newClient(t, nil)
	c2.loadOffer(context.Background())
	if c2.isDirect(GrantSTT) || !c2.isDirect(GrantTTS) {
		t.Fatalf("isDirect(stt)=%v isDirect(tts)=%v, want false and true",
			c2.isDirect(GrantSTT), c2.isDirect(GrantTTS))
	}
}

func TestProxyTokenOfADirectGrantIsReplaced(t *testing.T) {
	// The offer was not known when the first token was minted (info failed once).
	infoFails := true
	f := installFetch(t, func(r request) answer {
		if r.url == "/api/info" && infoFails {
			infoFails = false
			return answer{status: 0}
		}
		if r.url == "/cartesia/tts/bytes" {
			return audio
		}
		return directServer(audio)(r)
	})
	c := newClient(t, nil)

	for range 2 {
		if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
			t.Fatal(err)
		}
	}
	if f.count("/cartesia/tts/bytes") != 1 || f.count(upstream+"/tts/bytes") != 1 ||
		f.count("/api/token/direct") != 1 {
		t.Fatalf("requests = %+v, want one proxied call, then a direct token and call", f.all())
	}
}

func TestDirectSocketURLCarriesTokenAndVersion(t *testing.T) {
	installFetch(t, directServer(audio))
	c := newClient(t, nil)
	c.loadOffer(context.Background())

	got := c.directSocketURL("/cartesia/stt/websocket", "model=ink-whisper&encoding=pcm_s16le",
		"a/b+c")
	want := "ws://127.0.0.1:9/stt/websocket?model=ink-whisper&encoding=pcm_s16le&" +
		"access_token=a%2Fb%2Bc&cartesia_version=2025-04-16"
	if got != want {
		t.Fatalf("URL = %s\nwant  %s", got, want)
	}
}

func TestOfferWithABadUpstreamIsIgnored(t *testing.T) {
	for _, up := range []string{"javascript:alert(1)", "ws://127.0.0.1:9", "http://u@127.0.0.1:9",
		"http://127.0.0.1:9/path", "", "http://127.0.0.1:9?x=1"} {
		c := New(Options{NoProactive: true})
		c.setOffer(&DirectInfo{Grants: []string{"tts"}, Upstream: up})
		if c.isDirect(GrantTTS) {
			t.Errorf("upstream %q accepted", up)
		}
		c.Close()
	}
}

func TestDirectSocketOpensOnTheUpstreamWithAFreshToken(t *testing.T) {
	class := wsFakeInstall(t)
	_ = class.Set("refuse", true)
	f := installFetch(t, directServer(audio))
	c := newClient(t, nil)

	_, err := c.TTSWebSocket(context.Background())

	var e *Error
	if !errors.As(err, &e) || e.Code != CodeWSRefused {
		t.Fatalf("TTSWebSocket = %v, want ws_refused", err)
	}
	if s := fmt.Sprintf("%v %+v", e, *e); strings.Contains(s, "tok-") {
		t.Fatalf("the refusal repeats the token: %s", s)
	}
	if n := f.count("/api/token/direct"); n != 2 {
		t.Fatalf("%d direct mints, want 2 (the first and one after the refusal)", n)
	}
	for i, want := range []string{"tok-1", "tok-2"} {
		url := wsString(mustGet(t, wsFakeNth(t, class, i+1), "url"))
		if url != "ws://127.0.0.1:9/tts/websocket?access_token="+want+
			"&cartesia_version=2025-04-16" {
			t.Fatalf("socket %d opened %s, want the upstream with %s", i+1, url, want)
		}
	}
}

func TestDirectGrantReportsDirectBeforeItsFirstToken(t *testing.T) {
	installFetch(t, directServer(audio))
	c := newClient(t, nil)
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := c.Tokens().State(GrantTTS); st.Valid || !st.Direct {
		t.Fatalf("tts before a token = %+v, want direct and no token", st)
	}
	if st := c.Tokens().State(GrantSTT); st.Direct {
		t.Fatal("stt reports direct though the server offers only tts")
	}
}

func TestDirectErrorReadsLikeTheProxys(t *testing.T) {
	installFetch(t, directServer(answer{status: 400,
		body: `{"error_code":"invalid_request","title":"Invalid request","message":"bad voice"}`}))
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))
	var e *Error
	if !errors.As(err, &e) ||
		e.Message != "upstream answered 400 (invalid_request): Invalid request: bad voice" {
		t.Fatalf("error = %v, want the proxy's wording", err)
	}
}

// TestDirectSocketCloseReasonNeverRepeatsTheToken: a direct socket's close reason comes
// from the upstream, which holds the token the socket was dialled with; a reason quoting
// it whole, or any 16 bytes of it (two sockets could hand over its two halves), is not
// what Closed reports.
func TestDirectSocketCloseReasonNeverRepeatsTheToken(t *testing.T) {
	long := "tok-" + strings.Repeat("Ab3xY9qR7zK2wM5n", 18) // as long as a real token
	installFetch(t, func(r request) answer {
		if r.url == "/api/token/direct" {
			return answer{status: 200, body: `{"token":"` + long + `","grant":"tts",` +
				`"grants":["tts"],"expires_in":59,"expires_at":1772366459000,` +
				`"server_time":1772366400000}`}
		}
		return directServer(audio)(r)
	})
	class := wsFakeInstall(t)
	c := newClient(t, nil)

	tests := []struct{ reason, want string }{
		{long[:120], closeReasonWithheld},
		{long[len(long)-120:], closeReasonWithheld},
		{"bad token " + long[100:116] + " here", closeReasonWithheld},
		{"bad " + long + " here", "bad " + redacted + " here"},
		{"bad token " + long[100:115] + " here", "bad token " + long[100:115] + " here"},
		{"call ended by agent", "call ended by agent"},
	}
	for i, tt := range tests {
		sock, err := c.TTSWebSocket(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		fake := wsFakeNth(t, class, i+1)
		if url := wsString(mustGet(t, fake, "url")); !strings.Contains(url, long) {
			t.Fatalf("socket %d opened %s, want the upstream with the long token", i+1, url)
		}
		wsFakeCall(t, fake, "serverClose", 4001, tt.reason, true)
		if st := wsClosedWithin(t, sock.Closed); st != (CloseStatus{4001, tt.want}) {
			t.Errorf("close %d: Closed = %+v, want 4001 %q", i+1, st, tt.want)
		}
	}
}

func TestDirectNotAllowedFallsBackToTheProxy(t *testing.T) {
	f := installFetch(t, func(r request) answer {
		switch r.url {
		case "/api/token/direct":
			return errorAnswer(403, "direct_not_allowed")
		case "/cartesia/tts/bytes":
			return audio
		}
		return directServer(audio)(r)
	})
	c := newClient(t, nil)

	for range 2 {
		if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
			t.Fatalf("TTSBytes: %v", err)
		}
	}
	if f.count("/api/token/direct") != 1 || f.count("/api/token") != 1 ||
		f.count("/cartesia/tts/bytes") != 2 || f.count(upstream+"/tts/bytes") != 0 {
		t.Fatalf("requests = %+v, want one refused direct mint, then the proxy", f.all())
	}
	if c.Tokens().State(GrantTTS).Direct {
		t.Fatal("a refused grant still reports direct")
	}
}

func TestDirectAnswerRepeatingTheTokenIsWithheld(t *testing.T) {
	installFetch(t, directServer(answer{status: 200, body: "RIFF...tok-1...",
		header: map[string]string{"Content-Type": "audio/wav"}}))
	c := newClient(t, nil)

	got, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTokenEcho || got != nil {
		t.Fatalf("TTSBytes = %q, %v; want nothing and token_echo_withheld", got, err)
	}
	if strings.Contains(fmt.Sprintf("%v %+v", e, *e), "tok-1") {
		t.Fatal("the error repeats the token")
	}
}

func TestDirectSocketMessageRepeatingTheTokenEndsTheStream(t *testing.T) {
	class := wsFakeInstall(t)
	installFetch(t, func(r request) answer {
		if r.url == "/api/token/direct" {
			return answer{status: 200, body: `{"token":"tok-ws","grant":"stt","grants":["stt"],` +
				`"expires_in":59,"expires_at":1772366459000,"server_time":1772366400000}`}
		}
		if r.url == "/api/info" {
			return answer{status: 200, body: `{"upstream":"emulator","grants":["stt"],` +
				`"direct":{"grants":["stt"],"upstream":"` + upstream + `",` +
				`"cartesia_version":"2025-04-16","max_ttl":60}}`}
		}
		return errorAnswer(404, "not_found")
	})
	c := newClient(t, nil)

	stt, err := c.STTWebSocket(context.Background(), cartesia.STTOptions{
		Model: "ink-whisper", Encoding: "pcm_s16le", SampleRate: 16000})
	if err != nil {
		t.Fatal(err)
	}
	sock := wsFakeNth(t, class, 1)
	wsFakeCall(t, sock, "serverText", `{"type":"transcript","text":"ok","is_final":true}`)
	wsFakeCall(t, sock, "serverText", `{"type":"transcript","text":"tok-ws","is_final":true}`)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if ev, err := stt.Next(ctx); err != nil || ev.Text != "ok" {
		t.Fatalf("first event = %+v, %v", ev, err)
	}
	ev, err := stt.Next(ctx)
	var e *Error
	if !errors.As(err, &e) || e.Code != CodeTokenEcho {
		t.Fatalf("second event = %+v, %v; want token_echo_withheld", ev, err)
	}
	if st := wsClosedWithin(t, stt.Closed); st.Code != 4011 {
		t.Fatalf("Closed = %+v, want the client's 4011", st)
	}
}

func TestDirectErrorKeepsCartesiasRequestIDAndCapsRetryAfter(t *testing.T) {
	installFetch(t, directServer(answer{status: 429, body: `{"message":"slow down"}`,
		header: map[string]string{"Cartesia-Request-Id": "req-7", "Retry-After": "86400"}}))
	c := newClient(t, nil)

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))
	var e *Error
	if !errors.As(err, &e) || e.Code != "rate_limited" || e.Upstream == nil ||
		e.Upstream.RequestID != "req-7" || e.RetryAfter != 5*time.Minute {
		t.Fatalf("error = %#v, want rate_limited, request id req-7, Retry-After 5 min", err)
	}
}

func TestBaseURLCallsIncludeCredentials(t *testing.T) {
	f := installFetch(t, func(r request) answer {
		return answer{status: 200, body: infoAnswer}
	})
	c := New(Options{NoProactive: true, BaseURL: "http://127.0.0.1:9"})
	t.Cleanup(c.Close)
	if _, err := c.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	own := newClient(t, nil)
	if _, err := own.Info(context.Background()); err != nil {
		t.Fatal(err)
	}
	reqs := f.all()
	if reqs[0].credentials != "include" || reqs[1].credentials != "same-origin" {
		t.Fatalf("credentials %q and %q, want include with a BaseURL and same-origin "+
			"without", reqs[0].credentials, reqs[1].credentials)
	}
}
