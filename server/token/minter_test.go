package token

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// recorded is what the fake upstream saw of one request.
type recorded struct {
	method, path, query string
	header              http.Header
	body                []byte
}

// fakeCartesia answers POST /access-token like Cartesia and records every request.
type fakeCartesia struct {
	t      *testing.T
	srv    *httptest.Server
	mu     sync.Mutex
	reqs   []recorded
	answer func(w http.ResponseWriter, r *http.Request) // nil: mint ctok_CANARY_n
}

func newFake(t *testing.T) *fakeCartesia {
	f := &fakeCartesia{t: t}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f.mu.Lock()
		f.reqs = append(f.reqs, recorded{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Clone(), body})
		n := len(f.reqs)
		f.mu.Unlock()

		if f.answer != nil {
			f.answer(w, r)
			return
		}
		if r.Header.Get("Authorization") != "Bearer "+canaryKey {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"token": "ctok_CANARY_" + string(rune('0'+n))})
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeCartesia) requests() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.reqs...)
}

func newTestMinter(t *testing.T, upstream string, now func() time.Time) *Minter {
	t.Helper()
	m, err := NewMinter(MinterConfig{Upstream: upstream, Key: APIKey{v: canaryKey},
		Version: "2026-03-01", Now: now, Timeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestMintSendsOneGrantWithTheKeyAndVersion(t *testing.T) {
	f := newFake(t)
	start := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	m := newTestMinter(t, f.srv.URL, func() time.Time { return start })

	for _, g := range Grants() {
		tok, err := m.Mint(context.Background(), g, 300*time.Second)
		if err != nil {
			t.Fatalf("Mint(%s): %v", g, err)
		}
		if tok.Grant != g || !strings.HasPrefix(tok.Value.Reveal(), "ctok_CANARY_") {
			t.Errorf("token = %+v", tok)
		}
		if want := start.Add(300*time.Second - ExpiryResolution); !tok.ExpiresAt.Equal(want) {
			t.Errorf("ExpiresAt = %v, want %v (clock before request + ttl - resolution)",
				tok.ExpiresAt, want)
		}
	}

	for i, r := range f.requests() {
		g := Grants()[i]
		if r.method != http.MethodPost || r.path != "/access-token" || r.query != "" {
			t.Errorf("request %d: %s %s?%s", i, r.method, r.path, r.query)
		}
		if r.header.Get("Authorization") != "Bearer "+canaryKey {
			t.Errorf("request %d: no Bearer API key", i)
		}
		if r.header.Get("Cartesia-Version") != "2026-03-01" {
			t.Errorf("request %d: Cartesia-Version %q", i, r.header.Get("Cartesia-Version"))
		}
		var body map[string]any
		if err := json.Unmarshal(r.body, &body); err != nil {
			t.Fatal(err)
		}
		grants, _ := body["grants"].(map[string]any)
		if len(grants) != 1 || grants[string(g)] != true {
			t.Errorf("request %d: grants %v, want exactly {%q: true}", i, grants, g)
		}
		if body["expires_in"] != 300.0 || len(body) != 2 {
			t.Errorf("request %d: body %s", i, r.body)
		}
	}
}

func TestMintRefusesBadArgumentsWithoutCallingUpstream(t *testing.T) {
	f := newFake(t)
	m := newTestMinter(t, f.srv.URL, nil)
	cases := []struct {
		grant Grant
		ttl   time.Duration
	}{
		{"admin", 60 * time.Second},
		{TTS, time.Second},
		{TTS, 3601 * time.Second},
		{TTS, 1500 * time.Millisecond},
		{TTS, 0},
	}
	for _, c := range cases {
		if _, err := m.Mint(context.Background(), c.grant, c.ttl); err == nil {
			t.Errorf("Mint(%q, %v) succeeded", c.grant, c.ttl)
		}
	}
	if n := len(f.requests()); n != 0 {
		t.Errorf("upstream saw %d requests", n)
	}
}

func TestMintUpstreamErrors(t *testing.T) {
	tests := []struct {
		name   string
		status int
		ctype  string
		body   string
		want   UpstreamError
	}{
		{
			name: "structured JSON", status: 429, ctype: "application/json",
			body: `{"error_code":"concurrency_limited","title":"Too many","message":"slow down",` +
				`"request_id":"req-1"}`,
			want: UpstreamError{Status: 429, Code: "concurrency_limited", Title: "Too many",
				Message: "slow down", RequestID: "req-1", RetryAfter: "7"},
		},
		{
			name: "plain text", status: 401, ctype: "text/plain",
			body: "Unauthorized: invalid key",
			want: UpstreamError{Status: 401, Title: "Unauthorized", Message: "invalid key",
				RequestID: "hdr-req", RetryAfter: "7"},
		},
		{
			name: "key echoed back is scrubbed", status: 401, ctype: "application/json",
			body: `{"error_code":null,"title":"Bad key","message":"key ` + canaryKey + ` invalid"}`,
			want: UpstreamError{Status: 401, Title: "Bad key", Message: "key [REDACTED] invalid",
				RequestID: "hdr-req", RetryAfter: "7"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFake(t)
			f.answer = func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Content-Type", tt.ctype)
				w.Header().Set("Cartesia-Request-Id", "hdr-req")
				w.Header().Set("Retry-After", "7")
				w.WriteHeader(tt.status)
				_, _ = io.WriteString(w, tt.body)
			}
			_, err := newTestMinter(t, f.srv.URL, nil).Mint(context.Background(), TTS, time.Minute)

			var ue *UpstreamError
			if !errors.As(err, &ue) {
				t.Fatalf("error %v is not *UpstreamError", err)
			}
			if *ue != tt.want {
				t.Errorf("got %+v\nwant %+v", *ue, tt.want)
			}
			if strings.Contains(err.Error(), canaryKey) {
				t.Errorf("error text %q contains the key", err)
			}
		})
	}
}

func TestMintDoesNotFollowRedirects(t *testing.T) {
	var followed bool
	elsewhere := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
		followed = true
	}))
	defer elsewhere.Close()

	f := newFake(t)
	f.answer = func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere.URL+"/steal", http.StatusTemporaryRedirect)
	}
	_, err := newTestMinter(t, f.srv.URL, nil).Mint(context.Background(), TTS, time.Minute)

	var ue *UpstreamError
	if !errors.As(err, &ue) || ue.Status != http.StatusTemporaryRedirect {
		t.Errorf("error %v, want an UpstreamError with status 307", err)
	}
	if followed {
		t.Error("the minter followed the redirect with the API key")
	}
}

func TestMintBadResponses(t *testing.T) {
	bodies := map[string]string{
		"not JSON":     "<html>",
		"no token":     `{"tok":"x"}`,
		"empty token":  `{"token":""}`,
		"token header": `{"token":"a\r\nSet-Cookie: x"}`,
		"huge token":   `{"token":"` + strings.Repeat("a", 5000) + `"}`,
		"huge body":    `{"token":"a","pad":"` + strings.Repeat("a", 70<<10) + `"}`,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			f := newFake(t)
			f.answer = func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, body) }
			_, err := newTestMinter(t, f.srv.URL, nil).Mint(context.Background(), TTS, time.Minute)
			var ue *UpstreamError
			var te *TransportError
			if err == nil || errors.As(err, &ue) || errors.As(err, &te) {
				t.Errorf("error = %v, want a plain malformed-response error", err)
			}
		})
	}
}

func TestMintTransportErrors(t *testing.T) {
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		_ = ln.Close() // nothing listens there any more

		_, err = newTestMinter(t, "http://"+addr, nil).Mint(context.Background(), TTS, time.Minute)
		var te *TransportError
		if !errors.As(err, &te) || te.Timeout {
			t.Fatalf("error %v, want a non-timeout TransportError", err)
		}
	})

	t.Run("no answer in time", func(t *testing.T) {
		release := make(chan struct{})
		f := newFake(t)
		f.answer = func(http.ResponseWriter, *http.Request) { <-release }
		defer close(release)

		m, err := NewMinter(MinterConfig{Upstream: f.srv.URL, Key: APIKey{v: canaryKey},
			Version: "v", Timeout: 100 * time.Millisecond})
		if err != nil {
			t.Fatal(err)
		}
		_, err = m.Mint(context.Background(), TTS, time.Minute)
		var te *TransportError
		if !errors.As(err, &te) || !te.Timeout {
			t.Fatalf("error %v, want a timeout TransportError", err)
		}
		if strings.Contains(err.Error(), canaryKey) {
			t.Error("error contains the key")
		}
	})
}

func TestNewMinterRejectsUnsafeUpstreams(t *testing.T) {
	for _, u := range []string{"", "ftp://x", "https://user:pw@api.example", "https://api.example/v1",
		"https://api.example?x=1", "//api.example"} {
		_, err := NewMinter(MinterConfig{Upstream: u, Key: APIKey{v: canaryKey}, Version: "v"})
		if err == nil {
			t.Errorf("NewMinter accepted upstream %q", u)
		}
	}
	if _, err := NewMinter(MinterConfig{Upstream: "https://api.example", Version: "v"}); err == nil {
		t.Error("NewMinter accepted a zero key")
	}
}
