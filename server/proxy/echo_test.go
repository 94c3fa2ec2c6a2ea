package proxy_test

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/token"
)

// tokenCookieWith seals value as the harness session's token for grant.
func (h *harness) tokenCookieWith(grant token.Grant, value string) *http.Cookie {
	v, err := h.sealer.Seal(h.sess.ID, token.Token{Value: token.NewValue(value),
		Grant: grant, ExpiresAt: h.clk.Now().Add(time.Minute)})
	if err != nil {
		h.t.Fatal(err)
	}
	return &http.Cookie{Name: seal.CookieName(grant), Value: v}
}

// echoEvents returns the token_echo_blocked events logged so far.
func (h *harness) echoEvents() []sectest.Event {
	return h.logs.Events(h.t, "token_echo_blocked")
}

// checkOneEchoEvent fails unless exactly one token_echo_blocked event names route and
// the harness user. (The harness fails any test whose log holds the token.)
func checkOneEchoEvent(t *testing.T, h *harness, route string) {
	t.Helper()
	evs := h.echoEvents()
	if len(evs) != 1 || evs[0]["route"] != route || evs[0]["user"] != "alice" {
		t.Errorf("token_echo_blocked events %v, want one for %s and alice", evs, route)
	}
}

// TestEchoInASuccessIsWithheld: a 200 whose body or relayed headers carry the token
// (as sent, or URL-query-escaped) is answered 502 upstream_error on every HTTP route
// kind; nothing of it reaches the browser.
func TestEchoInASuccessIsWithheld(t *testing.T) {
	const odd = "ctok_CANARY/odd+token=" // has a distinct query-escaped form
	tests := []struct {
		name   string
		secret string
		// answer is upstream's answer for the token and the route's media type.
		answer func(tok, ctype string) (header http.Header, body string)
	}{
		{"body", upstreamToken, func(tok, _ string) (http.Header, string) {
			return nil, "RIFF....data" + tok + "...."
		}},
		{"body, escaped", odd, func(tok, _ string) (http.Header, string) {
			return nil, `{"text":"` + url.QueryEscape(tok) + `"}`
		}},
		{"request id header", upstreamToken, func(tok, _ string) (http.Header, string) {
			return http.Header{"Cartesia-Request-Id": {"req-" + tok}}, "RIFF"
		}},
		{"content type parameter", upstreamToken, func(tok, ctype string) (http.Header,
			string) {
			return http.Header{"Content-Type": {ctype + "; x=" + tok}}, "RIFF"
		}},
	}
	routes := map[string]string{
		"bytes": "/cartesia/tts/bytes", "sse": "/cartesia/tts/sse", "upload": "/cartesia/stt",
	}
	types := map[string]string{
		"bytes": "audio/wav", "sse": "text/event-stream", "upload": "application/json",
	}
	for _, tt := range tests {
		for kind, route := range routes {
			t.Run(tt.name+" "+kind, func(t *testing.T) {
				h := newHarness(t, nil)
				h.answer(func(w http.ResponseWriter, r *http.Request) {
					tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
					hdr, body := tt.answer(tok, types[kind])
					w.Header().Set("Content-Type", types[kind])
					for k, v := range hdr {
						w.Header()[k] = v
					}
					_, _ = io.WriteString(w, body)
				})

				var r *http.Request
				grant := token.TTS
				if kind == "upload" {
					grant = token.STT
				}
				cookie := h.tokenCookieWith(grant, tt.secret)
				switch kind {
				case "bytes":
					r = h.request(`{}`, h.sessionCookie(), cookie)
				case "sse":
					r = h.sseRequest()
					r.Header.Del("Cookie")
					r.AddCookie(h.sessionCookie())
					r.AddCookie(cookie)
				case "upload":
					body, ctype := pageForm(t, []byte("RIFF"), "model", "ink-whisper")
					r = h.uploadRequest(route, ctype, bytes.NewReader(body), int64(len(body)))
					r.Header.Del("Cookie")
					r.AddCookie(h.sessionCookie())
					r.AddCookie(cookie)
				}

				resp, got := h.do(r)
				if resp.StatusCode != http.StatusBadGateway ||
					errorCode(t, got).Code != "upstream_error" {
					t.Errorf("got %d %s, want 502 upstream_error", resp.StatusCode, got)
				}
				all := got + strings.Join(resp.Header.Values("Cartesia-Request-Id"), "") +
					resp.Header.Get("Content-Type")
				for _, leak := range []string{tt.secret, url.QueryEscape(tt.secret),
					"ctok_CANARY"} {
					if strings.Contains(all, leak) {
						t.Errorf("the browser got %q", leak)
					}
				}
				if len(h.upstreamSaw()) != 1 {
					t.Fatalf("upstream saw %d calls", len(h.upstreamSaw()))
				}
				checkOneEchoEvent(t, h, route)
			})
		}
	}
}

// TestEchoSplitAcrossReadsIsNeverPassedOn: a token that upstream sends in two reads is
// caught with neither half relayed. Before it, everything is relayed and flushed; the
// stream is then cut.
func TestEchoSplitAcrossReadsIsNeverPassedOn(t *testing.T) {
	tests := []struct {
		name, path    string
		ctype         string
		before, after string // what comes before and after the token
		request       func(h *harness) *http.Request
	}{
		{"bytes", "/cartesia/tts/bytes", "audio/wav", "RIFFaudio|", "|more audio",
			func(h *harness) *http.Request {
				return h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
			}},
		{"sse", "/cartesia/tts/sse", "text/event-stream", chunkEvent + "data: {\"x\":\"",
			"\"}\n\n" + doneEvent, func(h *harness) *http.Request { return h.sseRequest() }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			firstSeen := make(chan struct{})
			h.answer(func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tt.ctype)
				_, _ = io.WriteString(w, tt.before+upstreamToken[:8])
				w.(http.Flusher).Flush()
				if !waitChan(firstSeen) {
					return
				}
				_, _ = io.WriteString(w, upstreamToken[8:]+tt.after)
			})

			resp, err := h.client.Do(tt.request(h))
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			body := newChunks(resp.Body)
			// Everything before the token's first byte arrives at once; for SSE that is
			// the complete first event only.
			want := tt.before
			if tt.name == "sse" {
				want = chunkEvent
			}
			if got := body.next(t, 5*time.Second); got != want {
				t.Fatalf("first read %q, want %q", got, want)
			}
			close(firstSeen)

			rest := ""
			for s := range body.c {
				rest += s
			}
			if rest != "" {
				t.Errorf("after the echo the browser got %q", rest)
			}
			checkOneEchoEvent(t, h, tt.path)
		})
	}
}

// TestEchoSplitAcrossTheFirstTwoSSEReads: an echo in the first event, split across two
// reads, is caught before anything was sent, so the browser gets a clean 502.
func TestEchoSplitAcrossTheFirstTwoSSEReads(t *testing.T) {
	h := newHarness(t, nil)
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: {\"t\":\""+upstreamToken[:5])
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, upstreamToken[5:]+"\"}\n\n")
	})
	resp, got := h.do(h.sseRequest())
	if resp.StatusCode != http.StatusBadGateway || errorCode(t, got).Code != "upstream_error" {
		t.Errorf("got %d %s, want 502 upstream_error", resp.StatusCode, got)
	}
	checkOneEchoEvent(t, h, "/cartesia/tts/sse")
}

// TestWebSocketEchoClosesTheBrowserWith1011: an upstream message carrying the token
// (binary or text, as sent or escaped) is not relayed; the browser is closed with 1011
// and a fixed reason, upstream with 1008.
func TestWebSocketEchoClosesTheBrowserWith1011(t *testing.T) {
	const odd = "ctok_CANARY/odd+token="
	tests := []struct {
		name   string
		secret string
		typ    websocket.MessageType
		msg    func(tok string) []byte
	}{
		{"binary", upstreamToken, websocket.MessageBinary, func(tok string) []byte {
			return append(append([]byte{0, 1, 2}, tok...), 3, 4)
		}},
		{"text", upstreamToken, websocket.MessageText, func(tok string) []byte {
			return []byte(`{"type":"chunk","note":"` + tok + `"}`)
		}},
		{"text, escaped", odd, websocket.MessageText, func(tok string) []byte {
			return []byte(`{"url":"wss://x/?access_token=` + url.QueryEscape(tok) + `"}`)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			up := h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
				if err := c.Write(ctx, websocket.MessageText, []byte(`{"type":"ok"}`)); err != nil {
					return err
				}
				if err := c.Write(ctx, tt.typ, tt.msg(tt.secret)); err != nil {
					return err
				}
				_, _, err := c.Read(ctx)
				return err
			})
			c, resp, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
				h.tokenCookieWith(token.TTS, tt.secret))
			if err != nil {
				t.Fatalf("dial: %v %v", err, resp)
			}
			defer c.CloseNow()

			typ, msg, err := readWithin(t, c)
			if err != nil || typ != websocket.MessageText || string(msg) != `{"type":"ok"}` {
				t.Fatalf("first message %v %q %v", typ, msg, err)
			}
			_, msg, err = readWithin(t, c)
			if got := closeOf(err); got != (closed{websocket.StatusInternalError,
				"upstream message withheld"}) {
				t.Errorf("browser got %q then %+v, want a 1011 close", msg, got)
			}
			if got := up.next(t); got.code != websocket.StatusPolicyViolation {
				t.Errorf("upstream was closed with %+v, want 1008", got)
			}
			waitFor(t, "the relay's log", func() bool { return len(h.echoEvents()) == 1 })
			checkOneEchoEvent(t, h, "/cartesia/tts/websocket")
		})
	}
}

func TestWebSocketHandshakeEchoIsRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cartesia-Request-Id", strings.TrimPrefix(
			r.Header.Get("Authorization"), "Bearer "))
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		_, _, _ = c.Read(context.Background())
	})
	_, resp, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
		h.tokenCookie(token.TTS, time.Minute))
	status, code := refusal(t, resp, err)
	if status != http.StatusBadGateway || code != "upstream_error" {
		t.Errorf("got %d %s, want 502 upstream_error", status, code)
	}
	if strings.Contains(resp.Header.Get("Cartesia-Request-Id"), "ctok") {
		t.Error("the browser got the echoed header")
	}
	checkOneEchoEvent(t, h, "/cartesia/tts/websocket")
}

// withToken makes r carry the harness session and value as grant's token, instead of
// the cookies it had.
func (h *harness) withToken(r *http.Request, grant token.Grant, value string) *http.Request {
	r.Header.Del("Cookie")
	r.AddCookie(h.sessionCookie())
	r.AddCookie(h.tokenCookieWith(grant, value))
	return r
}

// TestEchoCheckPassesNormalTraffic: audio, events and messages that hold pieces and
// near misses of the token, cut anywhere, arrive byte for byte.
func TestEchoCheckPassesNormalTraffic(t *testing.T) {
	// The call's token here is not one the fake issued: the pieces of an issued one hold
	// the fake's token prefix, which G1 counts as a leak wherever it appears.
	const tok = "tok_NEAR_proxy"
	nearMisses := []string{
		tok[:len(tok)-1], // ends the body: held, then flushed
		tok[:len(tok)-1] + "X",
		tok[:5] + tok[:len(tok)-1] + "Y", // a restart inside a partial match
		strings.ToUpper(tok),
	}
	audio := make([]byte, 100<<10)
	for i := range audio {
		audio[i] = byte(i * 7)
	}

	t.Run("bytes", func(t *testing.T) {
		h := newHarness(t, nil)
		var want bytes.Buffer
		want.Write(audio)
		for _, m := range nearMisses {
			want.WriteString("|" + m)
		}
		h.answer(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "audio/wav")
			b := want.Bytes()
			for i := 0; i < len(b); i += 997 { // cuts that fall inside the near misses
				_, _ = w.Write(b[i:min(i+997, len(b))])
				w.(http.Flusher).Flush()
			}
		})
		resp, got := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookieWith(token.TTS, tok)))
		if resp.StatusCode != 200 || got != want.String() {
			t.Errorf("got %d with %d bytes, want 200 with %d", resp.StatusCode, len(got),
				want.Len())
		}
	})

	t.Run("sse", func(t *testing.T) {
		h := newHarness(t, nil)
		var want strings.Builder
		for _, m := range nearMisses {
			want.WriteString("data: {\"t\":\"" + m + "\"}\n\n")
		}
		want.WriteString(doneEvent)
		h.answer(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Content-Type", "text/event-stream")
			s := want.String()
			for i := 0; i < len(s); i += 5 {
				_, _ = io.WriteString(w, s[i:min(i+5, len(s))])
				w.(http.Flusher).Flush()
			}
		})
		resp, got := h.do(h.withToken(h.sseRequest(), token.TTS, tok))
		if resp.StatusCode != 200 || got != want.String() {
			t.Errorf("got %d %q", resp.StatusCode, got)
		}
	})

	t.Run("websocket", func(t *testing.T) {
		h := newHarness(t, nil)
		h.wsUpstream(func(ctx context.Context, c *websocket.Conn) error {
			if err := c.Write(ctx, websocket.MessageBinary, audio); err != nil {
				return err
			}
			for _, m := range nearMisses {
				if err := c.Write(ctx, websocket.MessageText, []byte(m)); err != nil {
					return err
				}
			}
			_, _, err := c.Read(ctx)
			return err
		})
		c, _, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
			h.tokenCookieWith(token.TTS, tok))
		if err != nil {
			t.Fatalf("dial: %v", err)
		}
		defer c.CloseNow()
		c.SetReadLimit(1 << 20)
		_, msg, err := readWithin(t, c)
		if err != nil || !bytes.Equal(msg, audio) {
			t.Fatalf("audio: %d bytes, %v", len(msg), err)
		}
		for _, m := range nearMisses {
			if _, msg, err := readWithin(t, c); err != nil || string(msg) != m {
				t.Fatalf("got %q %v, want %q", msg, err, m)
			}
		}
	})

	t.Run("upload answer", func(t *testing.T) {
		h := newHarness(t, nil)
		want := `{"type":"transcript","text":"` + nearMisses[0] + `"}`
		h.answerUnread(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header().Set("Content-Type", "application/json")
			_, _ = io.WriteString(w, want)
		})
		resp, got := h.do(h.withToken(h.formRequest("/cartesia/stt"), token.STT, tok))
		if resp.StatusCode != 200 || got != want {
			t.Errorf("got %d %q", resp.StatusCode, got)
		}
	})
}
