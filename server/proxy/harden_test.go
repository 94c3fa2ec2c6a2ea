package proxy_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// echoAuthorization answers status with an error body that repeats the credential it
// was sent, in every field and in a header, as a careless upstream might.
func echoAuthorization(status int, ctype string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		auth := r.Header.Get("Authorization")
		tok := strings.TrimPrefix(auth, "Bearer ")
		w.Header().Set("Content-Type", ctype)
		w.Header().Set("Cartesia-Request-Id", "req-"+tok)
		w.Header().Set("Retry-After", tok)
		w.WriteHeader(status)
		if ctype == "application/json" {
			fmt.Fprintf(w, `{"error_code":"bad_%s","title":"Rejected %s","message":"you sent %q",`+
				`"request_id":"id-%s"}`, tok, auth, auth, tok)
			return
		}
		fmt.Fprintf(w, "Unauthorized: header was %s (token %s)", auth, tok)
	}
}

// checkScrubbed fails when what the browser got carries the token or a Bearer credential.
func checkScrubbed(t *testing.T, what string, header http.Header, body string) {
	t.Helper()
	all := fmt.Sprint(header) + body
	for _, leak := range []string{upstreamToken, "Bearer ctok", "bearer ctok"} {
		if strings.Contains(all, leak) {
			t.Errorf("%s: the browser got %q:\n%v\n%s", what, leak, header, body)
		}
	}
}

// TestUpstreamErrorsNeverEchoTheToken covers every HTTP route kind and the WebSocket
// handshake refusal, with structured and plain-text error bodies.
func TestUpstreamErrorsNeverEchoTheToken(t *testing.T) {
	for _, ctype := range []string{"application/json", "text/plain"} {
		for _, status := range []int{401, 429, 500} {
			name := fmt.Sprintf("%s %d", ctype, status)
			t.Run(name, func(t *testing.T) {
				h := newHarness(t, nil)
				h.answer(echoAuthorization(status, ctype))

				requests := map[string]*http.Request{
					"bytes": h.request(`{}`, h.sessionCookie(),
						h.tokenCookie(token.TTS, time.Minute)),
					"sse":    h.sseRequest(),
					"upload": h.formRequest("/cartesia/stt"),
				}
				for route, r := range requests {
					resp, body := h.do(r)
					if resp.StatusCode != status {
						t.Errorf("%s: status %d, want %d", route, resp.StatusCode, status)
					}
					checkScrubbed(t, route, resp.Header, body)
					if !strings.Contains(body, "[REDACTED]") {
						t.Errorf("%s: nothing was redacted: %s", route, body)
					}
				}

				h.answerUnread(echoAuthorization(status, ctype))
				_, resp, err := h.dialWS("/cartesia/tts/websocket", nil, h.sessionCookie(),
					h.tokenCookie(token.TTS, time.Minute))
				if err == nil || resp == nil {
					t.Fatalf("the WebSocket was not refused: %v", err)
				}
				b, _ := io.ReadAll(resp.Body)
				checkScrubbed(t, "websocket", resp.Header, string(b))
			})
		}
	}
}

// TestSuccessContentTypeIsAllowlistedPerRoute: a successful answer keeps its media type
// only when the route could legitimately produce it; anything else (HTML above all, which
// would run as a page of our origin) is relayed as opaque bytes.
func TestSuccessContentTypeIsAllowlistedPerRoute(t *testing.T) {
	const octets = "application/octet-stream"
	tests := []struct {
		route, upstream, want string
	}{
		{"bytes", "audio/wav", "audio/wav"},
		{"bytes", "audio/mpeg", "audio/mpeg"},
		{"bytes", "audio/L16; rate=24000", "audio/l16; rate=24000"},
		{"bytes", octets, octets},
		{"bytes", "text/html; charset=utf-8", octets},
		{"bytes", "image/svg+xml", octets},
		{"bytes", "application/json", octets},
		{"bytes", "audio/wav; x=<script>", octets},
		{"bytes", "", octets},
		{"bytes", "audio", octets},
		{"sse", "text/event-stream", "text/event-stream"},
		{"sse", "text/event-stream; charset=utf-8", "text/event-stream; charset=utf-8"},
		{"sse", "text/html", octets},
		{"upload", "application/json", "application/json"},
		{"upload", "application/json; charset=utf-8", "application/json; charset=utf-8"},
		{"upload", "text/html", octets},
		{"upload", "audio/wav", octets},
	}
	for _, tt := range tests {
		t.Run(tt.route+" "+tt.upstream, func(t *testing.T) {
			h := newHarness(t, nil)
			h.answer(func(w http.ResponseWriter, _ *http.Request) {
				if tt.upstream == "" {
					w.Header()["Content-Type"] = nil // no sniffing upstream either
				} else {
					w.Header()["Content-Type"] = []string{tt.upstream}
				}
				_, _ = io.WriteString(w, "<html><script>alert(1)</script>\n\n")
			})
			var r *http.Request
			switch tt.route {
			case "bytes":
				r = h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
			case "sse":
				r = h.sseRequest()
			case "upload":
				r = h.formRequest("/cartesia/stt")
			}
			resp, _ := h.do(r)
			if resp.StatusCode != 200 {
				t.Fatalf("status %d", resp.StatusCode)
			}
			if got := resp.Header.Values("Content-Type"); len(got) != 1 || got[0] != tt.want {
				t.Errorf("Content-Type %q, want %q", got, tt.want)
			}
		})
	}
}

// TestHTTPConcurrencyCapPerUserAndGrant: one user may have only so many proxied HTTP calls
// of a grant in flight; one more is refused before anything reaches upstream.
func TestHTTPConcurrencyCapPerUserAndGrant(t *testing.T) {
	h := newHarness(t, func(c *proxy.Config) { c.HTTPPerUserGrant = 3 })
	release := make(chan struct{})
	var started sync.WaitGroup
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "audio/wav")
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		started.Done()
		<-release
	})

	var done sync.WaitGroup
	started.Add(3)
	for range 3 {
		done.Go(func() {
			resp, _ := h.do(h.request(`{}`, h.sessionCookie(),
				h.tokenCookie(token.TTS, time.Minute)))
			if resp.StatusCode != 200 {
				t.Errorf("a call within the cap: %d", resp.StatusCode)
			}
		})
	}
	started.Wait()

	resp, body := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))
	if resp.StatusCode != 429 || errorCode(t, body).Code != "rate_limited" ||
		resp.Header.Get("Retry-After") == "" {
		t.Errorf("call over the cap: %d %s Retry-After %q, want 429 rate_limited", resp.StatusCode,
			body, resp.Header.Get("Retry-After"))
	}
	if n := len(h.upstreamSaw()); n != 3 {
		t.Errorf("upstream saw %d calls, want 3", n)
	}
	if !strings.Contains(h.logText(), "http_concurrency_cap") {
		t.Error("no security_rejected event for the refused call")
	}

	// Another user, and another grant of the same user, have their own slots.
	bob, _ := h.sessions.Create(session.User{Name: "bob", Grants: token.Grants()})
	v, _ := h.sealer.Seal(bob.ID, token.Token{Value: token.NewValue(upstreamToken),
		Grant: token.TTS, ExpiresAt: h.clk.Now().Add(time.Minute)})
	started.Add(1)
	go func() {
		resp, _ := h.do(h.request(`{}`, &http.Cookie{Name: session.CookieName, Value: bob.ID},
			&http.Cookie{Name: seal.CookieName(token.TTS), Value: v}))
		if resp.StatusCode != 200 {
			t.Errorf("bob's call: %d", resp.StatusCode)
		}
	}()
	started.Wait()

	h.answer(nil)
	close(release)
	done.Wait()
	waitFor(t, "the slots to free", func() bool {
		resp, _ := h.do(h.request(`{}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute)))
		return resp.StatusCode == 200
	})
}

// TestRetryAfterRelayedOnlyWhenWellFormed: upstream's Retry-After reaches the browser
// only as whole seconds (a date is turned into seconds), at most five minutes, on errors
// and successes alike.
func TestRetryAfterRelayedOnlyWhenWellFormed(t *testing.T) {
	tests := []struct{ upstream, want string }{
		{"7", "7"},
		{"0", "0"},
		// A date becomes whole seconds until it, capped at token.MaxRetryAfter (this one
		// is a month after the harness clock).
		{"Wed, 01 Apr 2026 10:00:00 GMT", "300"},
		{"7  X-Injected: 1", ""},
		{"-1", ""},
		{"1.5", ""},
		{"soon", ""},
		{"99999999999999999999", ""},
	}
	for _, tt := range tests {
		for _, status := range []int{429, 200} {
			t.Run(fmt.Sprintf("%d %s", status, tt.upstream), func(t *testing.T) {
				h := newHarness(t, nil)
				h.answer(func(w http.ResponseWriter, _ *http.Request) {
					w.Header().Set("Content-Type", "audio/wav")
					w.Header().Set("Retry-After", tt.upstream)
					w.WriteHeader(status)
				})
				resp, _ := h.do(h.request(`{}`, h.sessionCookie(),
					h.tokenCookie(token.TTS, time.Minute)))
				if resp.StatusCode != status {
					t.Fatalf("status %d", resp.StatusCode)
				}
				if got := resp.Header.Values("Retry-After"); strings.Join(got, "|") != tt.want {
					t.Errorf("Retry-After %q, want %q", got, tt.want)
				}
			})
		}
	}
}
