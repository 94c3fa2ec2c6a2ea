package proxy_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// agentPath is the only shape of upstream path that carries request input.
var agentPath = regexp.MustCompile(`^/agents/stream/[A-Za-z0-9_-]{1,128}$`)

// fuzzProxy is the proxy's routes behind a mux, in front of a sectest fake Cartesia
// that records every request and answers at once: its own answers to HTTP calls, 403 to
// WebSocket handshakes (so no socket is ever relayed). One session holds a live token
// for every grant, each issued by the fake for that grant alone.
type fuzzProxy struct {
	mux     *http.ServeMux
	origin  string
	cookies []*http.Cookie
	fake    *sectest.FakeCartesia
	logs    *sectest.LogSink
	tokens  map[token.Grant]string
}

func newFuzzProxy(f *testing.F) *fuzzProxy {
	f.Helper()
	fp := &fuzzProxy{origin: "http://127.0.0.1:8080", fake: sectest.NewPlainFakeCartesia(f),
		logs: &sectest.LogSink{}, tokens: map[token.Grant]string{}}
	for _, rt := range proxy.Routes() {
		if rt.Kind == proxy.WebSocket {
			fp.fake.Handle(rt.Method+" "+rt.Upstream, sectest.Status(http.StatusForbidden))
		}
	}

	now := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	sessions := session.NewMemory(session.MemoryConfig{Now: clock})
	sealer, err := seal.NewRandom()
	if err != nil {
		f.Fatal(err)
	}
	sess, err := sessions.Create(session.User{Name: "alice", Grants: token.Grants(),
		MaxTTL: time.Hour, Agents: []string{session.AnyAgent}})
	if err != nil {
		f.Fatal(err)
	}
	fp.cookies = []*http.Cookie{{Name: session.CookieName, Value: sess.ID}}
	for _, g := range token.Grants() {
		fp.tokens[g] = fp.fake.Issue(string(g))
		v, err := sealer.Seal(sess.ID, token.Token{Value: token.NewValue(fp.tokens[g]),
			Grant: g, ExpiresAt: now.Add(time.Hour)})
		if err != nil {
			f.Fatal(err)
		}
		fp.cookies = append(fp.cookies, &http.Cookie{Name: seal.CookieName(g), Value: v})
	}

	p, err := proxy.New(proxy.Config{Upstream: fp.fake.URL(), Version: "2026-03-01",
		Origin: fp.origin, Sealer: sealer, Sessions: sessions, Logger: fp.logs.Logger(),
		Now: clock})
	if err != nil {
		f.Fatal(err)
	}
	fp.mux = http.NewServeMux()
	for _, rt := range proxy.Routes() {
		fp.mux.Handle(rt.Method+" /cartesia"+rt.Path, p.Handler(rt))
	}
	return fp
}

// routeFor finds the route whose upstream request this is, and checks the agent id.
func routeFor(s sectest.Request) (proxy.Route, bool) {
	for _, rt := range proxy.Routes() {
		if rt.Method != s.Method {
			continue
		}
		if rt.Upstream == s.Path ||
			strings.Contains(rt.Upstream, "{agent_id}") && agentPath.MatchString(s.Path) {
			return rt, true
		}
	}
	return proxy.Route{}, false
}

// FuzzRouteMapping: whatever path, query, method and handshake a browser sends under
// /cartesia, the upstream sees at most one request, and only one the route table
// allows: a listed method and path (an agent id only in its checked shape), the query
// cut down to the route's allowlist, the token of the route's grant as a bearer
// credential, and none of the client's cookies or credential parameters.
func FuzzRouteMapping(f *testing.F) {
	f.Add(uint8(0), "", "", false)
	f.Add(uint8(3), "", "model=ink-whisper&encoding=pcm_s16le&sample_rate=16000&"+
		"access_token=x&api_key=y&cartesia_version=z&keyterm=a&keyterm=b", true)
	f.Add(uint8(4), "", "model=ink-2&turn_end_timeout_ms=700&model=again", true)
	f.Add(uint8(5), "", "encoding=pcm_s16le&sample_rate=16000&language=en", false)
	f.Add(uint8(6), "", "encoding=pcm_s16le", false)
	f.Add(uint8(7), "agent_1-x", "", true)
	f.Add(uint8(7), "..%2F..%2Faccess-token", "", true)
	f.Add(uint8(7), "a%2Fb", "", true)
	f.Add(uint8(7), strings.Repeat("a", 129), "", true)
	f.Add(uint8(200), "/../access-token", "", false)
	f.Add(uint8(201), "//evil.example/tts/bytes", "a=%zz", true)
	f.Add(uint8(202), "/tts/bytes%3Fx", "", false)
	f.Add(uint8(1), "", "keyterm="+strings.Repeat("k", 1300), false)

	fp := newFuzzProxy(f)
	routes := proxy.Routes()

	f.Fuzz(func(t *testing.T, pick uint8, tail, rawQuery string, upgrade bool) {
		// A pick within the table asks for that route (tail is the agent id); beyond it,
		// tail is the whole path under /cartesia.
		var path string
		method := http.MethodPost
		if int(pick) < len(routes) {
			rt := routes[pick]
			path = strings.Replace(rt.Path, "{agent_id}", tail, 1)
			method = rt.Method
		} else {
			path = tail
			if pick%2 == 1 {
				method = http.MethodGet
			}
		}
		u, err := url.Parse("http://127.0.0.1:8080/cartesia" + path)
		if err != nil {
			t.Skip("not a URL a browser would send")
		}
		u.RawQuery = rawQuery

		r := httptest.NewRequest(method, "/", strings.NewReader(""))
		r.URL, r.RequestURI = u, u.RequestURI()
		if method == http.MethodPost {
			r.Body = io.NopCloser(strings.NewReader("{}"))
			r.ContentLength = 2
			r.Header.Set("Content-Type", "application/json")
			if strings.HasSuffix(u.Path, "/stt") || strings.HasSuffix(u.Path, "transcriptions") {
				r.Header.Set("Content-Type", "multipart/form-data; boundary=x")
			}
		}
		if upgrade {
			r.Header.Set("Connection", "Upgrade")
			r.Header.Set("Upgrade", "websocket")
			r.Header.Set("Sec-WebSocket-Version", "13")
			r.Header.Set("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ==")
			r.Header.Set("Origin", fp.origin)
		}
		for _, c := range fp.cookies {
			r.AddCookie(c)
		}
		r.Header.Set("X-Forwarded-Host", "evil.example")
		rec := httptest.NewRecorder()
		fp.mux.ServeHTTP(rec, r)

		if rec.Code == http.StatusInternalServerError {
			t.Fatalf("%s %s: 500 %s", method, u, rec.Body)
		}
		sectest.CheckAnswer(t, method, u.Path, rec, fp.logs.Take())

		saw := fp.fake.Take()
		if len(saw) > 1 {
			t.Fatalf("%s %s reached upstream %d times", method, u, len(saw))
		}
		for _, s := range saw {
			rt, ok := routeFor(s)
			if !ok {
				t.Fatalf("%s %s reached %s %s, which is not in the route table", method, u,
					s.Method, s.Path)
			}
			if int(pick) < len(routes) && routes[pick].Path != rt.Path {
				t.Fatalf("a call to %s reached %s", routes[pick].Path, s.Path)
			}
			if want := "Bearer " + fp.tokens[rt.Grant]; s.Header.Get("Authorization") != want {
				t.Fatalf("%s sent Authorization %q", s.Path, s.Header.Get("Authorization"))
			}
			for _, h := range []string{"Cookie", "X-Forwarded-Host", "Origin"} {
				if s.Header.Get(h) != "" && !(h == "Origin" && rt.Kind == proxy.WebSocket) {
					t.Fatalf("%s carried the client's %s header", s.Path, h)
				}
			}

			q, err := url.ParseQuery(s.RawQuery)
			if err != nil {
				t.Fatalf("upstream query %q is malformed", s.RawQuery)
			}
			for k, vs := range q {
				if rt.Query[k] == 0 || len(vs) > rt.Query[k] {
					t.Fatalf("%s got query parameter %q %d times (allowed %d)", s.Path, k,
						len(vs), rt.Query[k])
				}
				for _, v := range vs {
					if strings.ContainsAny(v, "\x00\r\n") {
						t.Fatalf("%s got %s=%q", s.Path, k, v)
					}
				}
			}
		}
	})
}
