package security_test

import (
	"context"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"testing"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/token"
)

// Items 9-11 and 15: what crosses the proxy, in each direction.

// tokenFor maps each grant to the token the fake issued for it in signedIn, which mints
// the grants in token.Grants order.
func tokenFor(e *env) map[token.Grant]string {
	toks := e.fake.Tokens()
	out := map[token.Grant]string{}
	for i, g := range token.Grants() {
		if i < len(toks) {
			out[g] = toks[i]
		}
	}
	return out
}

// upstreamRoute is the fake's route for a proxy route.
func upstreamRoute(rt proxy.Route) string { return rt.Method + " " + rt.Upstream }

// throughEveryRoute sends one valid call on every proxy route with header added (and
// extra appended), checks it succeeded, and returns what the fake received for each.
func throughEveryRoute(t *testing.T, e *env, header map[string]string,
	extra http.Header) map[string]sectest.Request {
	t.Helper()
	cookies := e.signedIn()
	out := map[string]sectest.Request{}

	for _, rt := range proxy.Routes() {
		if rt.Kind == proxy.WebSocket {
			hdr := http.Header{}
			for k, v := range header {
				hdr.Set(k, v)
			}
			for k, v := range extra {
				hdr[k] = append(hdr[k], v...)
			}
			path := browserPath(rt)
			c, resp, err := e.dialWS(path, hdr, cookies...)
			if err != nil {
				status, code := 0, ""
				if resp != nil {
					status, code = refusalCode(t, resp, err)
				}
				t.Errorf("%s: %v %d %s", path, err, status, code)
				continue
			}
			e.roundTrip(c, path, []byte(`{"hello":1}`))
			_ = c.CloseNow()
		} else {
			c := proxyCall(rt, cookies)
			c = with(c, header)
			c.extra = extra
			if a := e.do(c); a.status != http.StatusOK {
				t.Errorf("%s: %d %s, want 200", c.path, a.status, a.body)
				continue
			}
		}
		seen := e.fake.RequestsTo(upstreamRoute(rt))
		if len(seen) != 1 {
			t.Errorf("%s: upstream saw %d requests, want 1", rt.Path, len(seen))
			continue
		}
		out[rt.Path] = seen[0]
	}
	return out
}

func TestItem09_ClientCredentialsStayBehind(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := throughEveryRoute(t, e,
		map[string]string{"Authorization": "Bearer attacker", "X-Api-Key": "attacker",
			"Proxy-Authorization": "Basic YTpi"},
		http.Header{"x-api-key": {"attacker2"}, "X_Api_Key": {"attacker3"},
			"X-API-KEY": {"attacker4"}, "Authorization": {"Bearer attacker5"}})
	toks := tokenFor(e)

	for _, rt := range proxy.Routes() {
		got, ok := seen[rt.Path]
		if !ok {
			continue
		}
		if auth := got.Header.Values("Authorization"); len(auth) != 1 ||
			auth[0] != "Bearer "+toks[rt.Grant] {
			t.Errorf("%s: upstream Authorization %q, want exactly the %s token", rt.Path, auth,
				rt.Grant)
		}
		for name, vals := range got.Header {
			folded := strings.ReplaceAll(strings.ToLower(name), "_", "-")
			if folded == "cookie" || folded == "x-api-key" || folded == "proxy-authorization" {
				t.Errorf("%s: upstream received %s: %q", rt.Path, name, vals)
			}
			for _, v := range vals {
				if strings.Contains(v, "attacker") {
					t.Errorf("%s: upstream received the client's %s: %q", rt.Path, name, v)
				}
			}
		}
	}
}

func TestItem10_OnlyAllowlistedHeadersReachUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	seen := throughEveryRoute(t, e, map[string]string{
		"Referer":           "https://evil.example/page",
		"User-Agent":        "evil",
		"Cartesia-Version":  "1999-01-01",
		"X-Random":          "1",
		"Forwarded":         "for=10.9.9.9;host=evil.example;proto=https",
		"X-Forwarded-For":   "10.9.9.9",
		"X-Forwarded-Host":  "evil.example",
		"X-Forwarded-Proto": "https",
		"X-Real-Ip":         "10.9.9.9",
		"X-Original-Url":    "/admin",
		"X-Rewrite-Url":     "/admin",
		"Sec-Fetch-Dest":    "empty",
		"Accept-Language":   "en",
		"Sec-Ch-Ua":         "evil",
		"Traceparent":       "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
	}, http.Header{"Connection": {"X-Random"}})

	// What upstream may see: our credential and version, the body's description, and
	// what the transport or the WebSocket handshake adds itself.
	common := map[string]bool{"Authorization": true, "Cartesia-Version": true,
		"User-Agent": true}
	httpOnly := map[string]bool{"Content-Type": true, "Accept": true, "Content-Length": true,
		"Accept-Encoding": true}
	wsOnly := map[string]bool{"Connection": true, "Upgrade": true, "Sec-Websocket-Key": true,
		"Sec-Websocket-Version": true, "Accept-Encoding": true}

	for _, rt := range proxy.Routes() {
		got, ok := seen[rt.Path]
		if !ok {
			continue
		}
		for name, vals := range got.Header {
			if common[name] || rt.Kind == proxy.WebSocket && wsOnly[name] ||
				rt.Kind != proxy.WebSocket && httpOnly[name] {
				continue
			}
			t.Errorf("%s: upstream received %s: %q", rt.Path, name, vals)
		}
		if v := got.Header.Get("Cartesia-Version"); v != cartesiaVersion {
			t.Errorf("%s: Cartesia-Version %q, want the server's %q", rt.Path, v, cartesiaVersion)
		}
		if v := got.Header.Get("User-Agent"); v != "voxgate" {
			t.Errorf("%s: User-Agent %q", rt.Path, v)
		}
		if got.Host != strings.TrimPrefix(e.fake.URL(), "https://") {
			t.Errorf("%s: upstream Host %q, want the configured upstream", rt.Path, got.Host)
		}
	}
}

// hostileValue reports which hostile header, if any, a browser-facing header carries.
func hostileValue(h http.Header) []string {
	var out []string
	for name, bad := range sectest.HostileResponseHeaders {
		for _, v := range h.Values(name) {
			for _, b := range bad {
				if v == b {
					out = append(out, name+": "+v)
				}
			}
		}
	}
	if h.Get("X-Leak") != "" {
		out = append(out, "X-Leak")
	}
	return out
}

func TestItem11_OnlyAllowlistedHeadersReachTheBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()

	for _, rt := range proxy.Routes() {
		route := upstreamRoute(rt)
		def := e.fake.Default(route)
		for _, answer := range []struct {
			name string
			h    http.Handler
		}{
			{"success after 103", sectest.EarlyHints(sectest.Hostile(def))},
			{"403", sectest.Hostile(sectest.Status(http.StatusForbidden))},
			{"500", sectest.Hostile(sectest.Status(http.StatusInternalServerError))},
		} {
			e.fake.Handle(route, answer.h)
			if rt.Kind == proxy.WebSocket {
				c, resp, err := e.dialWS(browserPath(rt), nil, cookies...)
				if resp == nil {
					t.Errorf("%s %s: no answer: %v", rt.Path, answer.name, err)
					continue
				}
				if bad := hostileValue(resp.Header); len(bad) > 0 {
					t.Errorf("%s %s: the browser got %q", rt.Path, answer.name, bad)
				}
				if c != nil {
					_ = c.CloseNow()
				}
				continue
			}

			hints := 0
			trace := &httptrace.ClientTrace{Got1xxResponse: func(int, textproto.MIMEHeader) error {
				hints++
				return nil
			}}
			c := proxyCall(rt, cookies)
			c.ctx = httptrace.WithClientTrace(context.Background(), trace)
			a := e.do(c)
			if bad := hostileValue(a.header); len(bad) > 0 {
				t.Errorf("%s %s: the browser got %q", rt.Path, answer.name, bad)
			}
			if hints != 0 {
				t.Errorf("%s %s: %d informational responses reached the browser", rt.Path,
					answer.name, hints)
			}
			if a.header.Get("Cache-Control") != "no-store" {
				t.Errorf("%s %s: Cache-Control %q", rt.Path, answer.name,
					a.header.Get("Cache-Control"))
			}
		}
	}
}

func TestItem15_OnlyAllowlistedQueryParametersReachUpstream(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()
	creds := "access_token=evil&api_key=evil&cartesia_version=1999-01-01"

	// HTTP routes: the allowlist is kept, everything else dropped silently.
	for _, tc := range []struct{ route, query, want string }{
		{"/tts/bytes", creds + "&a=%x&b=1;c=2", ""},
		{"/tts/sse", creds + "&model_id=x", ""},
		{"/stt", creds + "&encoding=pcm_s16le&sample_rate=16000&language=en",
			"encoding=pcm_s16le&sample_rate=16000"},
		{"/audio/transcriptions", creds + "&encoding=pcm_s16le", ""},
	} {
		rt := routeAt(t, tc.route)
		c := proxyCall(rt, cookies)
		c.path += "?" + tc.query
		if a := e.do(c); a.status != http.StatusOK {
			t.Errorf("%s?%s: %d %s", tc.route, tc.query, a.status, a.body)
			continue
		}
		seen := e.fake.RequestsTo(upstreamRoute(rt))
		if got := seen[len(seen)-1].RawQuery; got != tc.want {
			t.Errorf("%s: upstream query %q, want %q", tc.route, got, tc.want)
		}
	}

	// WebSockets likewise; the credential parameters never travel in the URL.
	path := "/cartesia/stt/websocket?model=ink-whisper&" + creds
	c, _, err := e.dialWS(path, nil, cookies...)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	_ = c.CloseNow()
	hs := e.fake.RequestsTo(sectest.RouteSTTWebSocket)
	if len(hs) != 1 || hs[0].RawQuery != "model=ink-whisper" {
		t.Errorf("upstream handshake query: %+v", hs)
	}

	// A query the route reads but cannot parse, or repeats, is refused before upstream.
	upstream := len(e.fake.Requests())
	for _, path := range []string{"/cartesia/stt?encoding=a&b=%x", "/cartesia/stt?encoding=a;b",
		"/cartesia/stt?encoding=a&encoding=b"} {
		rt := routeAt(t, "/stt")
		c := proxyCall(rt, cookies)
		c.path = path
		if a := e.do(c); a.status != http.StatusBadRequest || a.code() != "bad_request" {
			t.Errorf("%s: %d %s, want 400 bad_request", path, a.status, a.body)
		}
	}
	for _, path := range []string{"/cartesia/stt/websocket?model=a&b=%x",
		"/cartesia/stt/websocket?model=a;b=c", "/cartesia/stt/websocket?model=a&model=b"} {
		status, code := e.refused(path, cookies)
		if status != http.StatusBadRequest || code != "bad_request" {
			t.Errorf("%s: %d %s, want 400 bad_request", path, status, code)
		}
	}
	if n := len(e.fake.Requests()) - upstream; n != 0 {
		t.Errorf("upstream saw %d requests for refused queries", n)
	}
}

// refused dials an upgrade that must be refused and returns its status and error code.
func (e *env) refused(path string, cookies []*http.Cookie) (int, string) {
	e.t.Helper()
	_, resp, err := e.dialWS(path, nil, cookies...)
	return refusalCode(e.t, resp, err)
}

// routeAt finds the proxy route served at /cartesia+path.
func routeAt(t *testing.T, path string) proxy.Route {
	t.Helper()
	for _, rt := range proxy.Routes() {
		if rt.Path == path {
			return rt
		}
	}
	t.Fatalf("no proxy route %s", path)
	return proxy.Route{}
}

// TestUpstreamEchoesOfTheTokenAreScrubbed: an upstream that repeats the credential it
// rejected, in its body, its headers or a WebSocket refusal, must not make the proxy
// repeat it to the page (I1, I9; G1 checks every answer and log line).
func TestUpstreamEchoesOfTheTokenAreScrubbed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	cookies := e.signedIn()

	for _, rt := range proxy.Routes() {
		e.fake.Handle(upstreamRoute(rt), sectest.EchoCredentials())
		if rt.Kind == proxy.WebSocket {
			status, code := e.refused(browserPath(rt), cookies)
			if status != http.StatusUnauthorized || code != "token_expired" {
				t.Errorf("%s: %d %s, want 401 token_expired", rt.Path, status, code)
			}
			continue
		}
		a := e.do(proxyCall(rt, cookies))
		if a.status != http.StatusUnauthorized || a.code() != "token_expired" {
			t.Errorf("%s: %d %s, want 401 token_expired", rt.Path, a.status, a.body)
		}
		if strings.Contains(a.body, url.QueryEscape(sectest.TokenPrefix)) {
			t.Errorf("%s: the token came back escaped: %s", rt.Path, a.body)
		}
	}
}
