package sectest

import (
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/coder/websocket"
)

// Handlers for FakeCartesia.Handle that make the fake misbehave the way a broken or
// hostile upstream would.

// HostileResponseHeaders are response headers no upstream answer may pass on to the
// browser: cookies for our origin, CORS grants, protocol and transport pins, a policy
// of its own, redirects and preloads elsewhere, and a header named in Connection.
var HostileResponseHeaders = http.Header{
	"Set-Cookie":                       {"up=1; Domain=127.0.0.1; Path=/"},
	"Access-Control-Allow-Origin":      {"*"},
	"Access-Control-Allow-Credentials": {"true"},
	"Alt-Svc":                          {`h3=":443"; ma=86400`},
	"Strict-Transport-Security":        {"max-age=63072000; includeSubDomains"},
	"Content-Security-Policy":          {"script-src * 'unsafe-inline'"},
	"Server":                           {"hostile-upstream/1.0"},
	"X-Powered-By":                     {"hostile"},
	"Www-Authenticate":                 {`Basic realm="hostile"`},
	"Location":                         {"https://evil.example/landing"},
	"Link":                             {"<https://evil.example/x.js>; rel=preload; as=script"},
	"Report-To":                        {`{"group":"x","endpoints":[{"url":"https://evil.example"}]}`},
	"Refresh":                          {"0; url=https://evil.example/"},
	"Clear-Site-Data":                  {`"*"`},
	"Connection":                       {"X-Leak"},
	"X-Leak":                           {"1"},
}

// Hostile sets every header in HostileResponseHeaders, then runs next.
func Hostile(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k, v := range HostileResponseHeaders {
			w.Header()[k] = append([]string(nil), v...)
		}
		next.ServeHTTP(w, r)
	})
}

// EarlyHints sends a 103 Early Hints response carrying a Link preload and a Set-Cookie,
// then runs next. A relay that forwarded 1xx responses would pass both to the browser.
func EarlyHints(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Link", HostileResponseHeaders.Get("Link"))
		h.Set("Set-Cookie", "hint=1; Path=/")
		w.WriteHeader(http.StatusEarlyHints)
		h.Del("Link")
		h.Del("Set-Cookie")
		next.ServeHTTP(w, r)
	})
}

// Redirect answers status (a 3xx) with Location: location, as an upstream that tries to
// send the caller, and its credentials, somewhere else.
func Redirect(status int, location string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Location", location)
		w.WriteHeader(status)
	})
}

// EchoCredentials answers 401 in Cartesia's error shape with every credential the
// request carried repeated back: the Authorization and X-API-Key headers in the title,
// message and WWW-Authenticate, and the raw query in the message.
func EchoCredentials() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		auth, key := r.Header.Get("Authorization"), r.Header.Get("X-API-Key")
		bare := strings.TrimPrefix(auth, "Bearer ")
		w.Header().Set("Www-Authenticate", `Bearer error="invalid_token", token="`+bare+`"`)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusUnauthorized)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"error_code": "invalid_token",
			"title":      "Unauthorized: " + bare,
			"message": "rejected Authorization " + auth + " X-API-Key " + key +
				" token=" + bare + " query " + r.URL.RawQuery,
			"request_id": bare,
		})
	})
}

// RateLimited answers 429 with Retry-After: retryAfter and Cartesia's
// concurrency_limited error.
func RateLimited(retryAfter string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", retryAfter)
		cartesiaError(w, http.StatusTooManyRequests, "concurrency_limited",
			"Too many concurrent requests", "You have exceeded your plan's concurrency limit.")
	})
}

// Status answers status with a Cartesia-shaped error, for example 402 or 500.
func Status(status int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		cartesiaError(w, status, "", http.StatusText(status), "the fake was told to fail")
	})
}

// Slow answers 200 with Content-Type ctype and writes chunk n times, one every interval,
// flushing each; it stops early when the request ends.
func Slow(ctype string, chunk []byte, n int, every time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", ctype)
		rc := http.NewResponseController(w)
		for i := range n {
			if i > 0 {
				select {
				case <-r.Context().Done():
					return
				case <-time.After(every):
				}
			}
			if _, err := w.Write(chunk); err != nil {
				return
			}
			_ = rc.Flush()
		}
	})
}

// Stall never answers: it holds the request until the client gives up or the fake
// closes.
func Stall() http.Handler {
	return http.HandlerFunc(func(_ http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
}

// OversizeFrame accepts a WebSocket, sends one binary message of size bytes, and then
// echoes until the connection ends.
func OversizeFrame(size int) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		c.SetReadLimit(8 << 20)
		if err := c.Write(r.Context(), websocket.MessageBinary, make([]byte, size)); err != nil {
			return
		}
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	})
}
