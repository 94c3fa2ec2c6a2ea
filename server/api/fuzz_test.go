package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/seal"
	"github.com/voxgate/voxgate/server/sectest"
	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// fuzzOrigin is the public origin of the fuzzed handler; requests go to it in process.
const fuzzOrigin = "http://127.0.0.1:8080"

// mintCall is one Mint the handler asked for.
type mintCall struct {
	grant token.Grant
	ttl   time.Duration
}

// recordingMinter mints canary tokens without a network and remembers every call, so a
// fuzz target can tell exactly what a request made the server ask upstream for.
type recordingMinter struct {
	mu    sync.Mutex
	calls []mintCall
	now   time.Time
}

func (m *recordingMinter) Mint(_ context.Context, g token.Grant, ttl time.Duration) (
	token.Token, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, mintCall{g, ttl})
	return token.Token{Value: token.NewValue(fmt.Sprintf("%s%d", sectest.TokenPrefix, len(m.calls))),
		Grant: g, ExpiresAt: m.now.Add(ttl)}, nil
}

// take returns and forgets the calls so far.
func (m *recordingMinter) take() []mintCall {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := m.calls
	m.calls = nil
	return out
}

// fuzzServer is the whole api handler, called in process, with bob (tts only, tokens up
// to 600 s, default 300 s) signed in. Its clock never moves and its limits are wide, so
// every fuzz input meets the same state.
type fuzzServer struct {
	h       http.Handler
	minter  *recordingMinter
	session *http.Cookie
	logs    *sectest.LogSink
}

func newFuzzServer(f *testing.F) *fuzzServer {
	f.Helper()
	now := time.Date(2026, 4, 1, 8, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	bob, err := session.NewUser("bob", "bob-pw", []token.Grant{token.TTS}, 600*time.Second,
		bcrypt.MinCost)
	if err != nil {
		f.Fatal(err)
	}
	users, err := session.NewDirectory([]session.User{bob})
	if err != nil {
		f.Fatal(err)
	}
	sealer, err := seal.NewRandom()
	if err != nil {
		f.Fatal(err)
	}
	wide := api.RateLimit{Every: time.Nanosecond, Burst: 1 << 30}
	fs := &fuzzServer{minter: &recordingMinter{now: now}, logs: &sectest.LogSink{}}
	fs.h, err = api.New(api.Config{
		PublicOrigin:    fuzzOrigin,
		Upstream:        "http://127.0.0.1:9", // never dialled: no proxy route is called
		UpstreamKind:    api.UpstreamEmulator,
		CartesiaVersion: "2026-03-01",
		Minter:          fs.minter,
		Sealer:          sealer,
		Users:           users,
		TokenTTL:        300 * time.Second,
		MintLimit:       wide,
		LoginUserLimit:  wide,
		LoginIPLimit:    wide,
		LoginPairLimit:  wide,
		Static:          staticFS(),
		Logger:          fs.logs.Logger(),
		Now:             clock,
	})
	if err != nil {
		f.Fatal(err)
	}

	rec := fs.post("/api/login", []byte(`{"username":"bob","password":"bob-pw"}`))
	for _, c := range rec.Result().Cookies() {
		if c.Name == session.CookieName {
			fs.session = &http.Cookie{Name: c.Name, Value: c.Value}
		}
	}
	if rec.Code != http.StatusOK || fs.session == nil {
		f.Fatalf("login: %d %s", rec.Code, rec.Body)
	}
	return fs
}

// post sends a same-origin JSON POST as the page would, with the session when there is
// one.
func (fs *fuzzServer) post(path string, body []byte) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, fuzzOrigin+path, bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-CSRF", "1")
	r.Header.Set("Sec-Fetch-Site", "same-origin")
	if fs.session != nil {
		r.AddCookie(fs.session)
	}
	rec := httptest.NewRecorder()
	fs.h.ServeHTTP(rec, r)
	return rec
}

// errorCode checks that an answer is our JSON error shape and returns its code.
func errorCode(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var b reply.Body
	if err := json.Unmarshal(rec.Body.Bytes(), &b); err != nil || b.Error.Code == "" ||
		b.Error.Message == "" {
		t.Fatalf("status %d with body %q, not the error shape", rec.Code, rec.Body)
	}
	return b.Error.Code
}

// tokenAnswer checks a POST /api/token answer against what the minter was asked: a 200
// mints exactly one tts token whose lifetime the body reports and the cookie carries;
// anything else mints nothing and is a 4xx in our error shape.
func (fs *fuzzServer) tokenAnswer(t *testing.T, rec *httptest.ResponseRecorder) (
	mintCall, bool) {
	t.Helper()
	calls := fs.minter.take()
	sectest.CheckAnswer(t, http.MethodPost, "/api/token", rec, fs.logs.Take())
	if rec.Code != http.StatusOK {
		code := errorCode(t, rec)
		if len(calls) != 0 || rec.Code >= 500 ||
			!slices.Contains([]string{"bad_request", "grant_forbidden", "body_too_large"}, code) {
			t.Fatalf("%d %s after %d mints", rec.Code, code, len(calls))
		}
		if len(rec.Result().Cookies()) != 0 {
			t.Fatalf("a refused mint set cookies %v", rec.Result().Cookies())
		}
		return mintCall{}, false
	}

	if len(calls) != 1 {
		t.Fatalf("200 after %d mints", len(calls))
	}
	c := calls[0]
	if c.grant != token.TTS || c.ttl < token.MinTTL || c.ttl > 600*time.Second ||
		c.ttl%time.Second != 0 {
		t.Fatalf("minted %s for %v, outside bob's policy", c.grant, c.ttl)
	}
	var info struct {
		Grant     string `json:"grant"`
		ExpiresIn int    `json:"expires_in"`
	}
	// The answer gives the usable life: the lifetime asked less token.ExpiryResolution.
	usable := max(c.ttl-token.ExpiryResolution, time.Second)
	if err := json.Unmarshal(rec.Body.Bytes(), &info); err != nil || info.Grant != "tts" ||
		time.Duration(info.ExpiresIn)*time.Second != usable {
		t.Fatalf("answered %q for a %v mint", rec.Body, c.ttl)
	}
	cookies := rec.Result().Cookies()
	if len(cookies) != 1 || cookies[0].Name != seal.CookieName(token.TTS) ||
		time.Duration(cookies[0].MaxAge)*time.Second > c.ttl {
		t.Fatalf("a %v tts mint set cookies %v", c.ttl, cookies)
	}
	return c, true
}

var tokenBodies = []string{
	`{"grant":"tts"}`, `{"grant":"tts","expires_in":2}`, `{"grant":"tts","expires_in":600}`,
	`{"grant":"tts","expires_in":null}`, `{"grant":"tts","expires_in":601}`,
	`{"grant":"tts","expires_in":1}`, `{"grant":"tts","expires_in":-5}`,
	`{"grant":"tts","expires_in":60.0}`, `{"grant":"tts","expires_in":6e1}`,
	`{"grant":"tts","expires_in":"60"}`, `{"grant":"tts","expires_in":99999999999}`,
	`{"grant":"stt"}`, `{"grant":"agent","expires_in":60}`, `{"grant":"TTS"}`,
	`{"grant":"tts","grant":"stt"}`, `{"grant":"tts","extra":1}`, `{"grant":"tts"} {}`,
	`{"grant":"tts\u0000"}`, `{"grant":null}`, `{}`, `[]`, `"tts"`, ``,
	`{"grant":"tts","expires_in":` + strings.Repeat("9", 5000) + `}`,
}

// FuzzTokenRequestBody: whatever bytes POST /api/token gets, the server mints either
// nothing, or exactly one token for a grant the user holds and a lifetime within the
// user's policy, which is the lifetime the body asked for (or the default).
func FuzzTokenRequestBody(f *testing.F) {
	for _, b := range tokenBodies {
		f.Add([]byte(b))
	}
	fs := newFuzzServer(f)

	f.Fuzz(func(t *testing.T, body []byte) {
		c, ok := fs.tokenAnswer(t, fs.post("/api/token", body))
		if !ok {
			return
		}

		// Minted: the body must say so, read independently of the server's decoder.
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(body, &fields); err != nil {
			t.Fatalf("minted for %q, which is not a JSON object: %v", body, err)
		}
		for k := range fields {
			if k != "grant" && k != "expires_in" {
				t.Fatalf("minted for %q, which has the unknown field %q", body, k)
			}
		}
		var grant string
		if err := json.Unmarshal(fields["grant"], &grant); err != nil || grant != "tts" {
			t.Fatalf("minted tts for grant %s", fields["grant"])
		}
		want := 300 * time.Second
		if raw := strings.TrimSpace(string(fields["expires_in"])); raw != "" && raw != "null" {
			n, err := strconv.ParseInt(raw, 10, 64)
			if err != nil {
				t.Fatalf("minted for expires_in %s, not a plain integer", raw)
			}
			want = time.Duration(n) * time.Second
		}
		if c.ttl != want {
			t.Fatalf("body %q asked for %v, minted %v", body, want, c.ttl)
		}
	})
}

// FuzzTokenRequestFields: the documented rule, exactly. bob may mint tts for 2 to 600 s
// (300 s when expires_in is left out); stt and agent are 403 grant_forbidden; any other
// grant or lifetime is 400 bad_request; a body over 4 KiB is 413 body_too_large.
func FuzzTokenRequestFields(f *testing.F) {
	f.Add("tts", int64(60), true)
	f.Add("tts", int64(0), false)
	f.Add("stt", int64(60), true)
	f.Add("agent", int64(2), false)
	f.Add("tts", int64(601), true)
	f.Add("tts", int64(1), true)
	f.Add("", int64(60), true)
	f.Add(" tts", int64(60), true)
	f.Add("tts", int64(-1)<<62, true)
	fs := newFuzzServer(f)

	f.Fuzz(func(t *testing.T, grant string, expiresIn int64, withTTL bool) {
		in := map[string]any{"grant": grant}
		if withTTL {
			in["expires_in"] = expiresIn
		}
		body, _ := json.Marshal(in)
		rec := fs.post("/api/token", body)
		c, minted := fs.tokenAnswer(t, rec)

		wantTTL := 300 * time.Second
		if withTTL {
			wantTTL = time.Duration(expiresIn) * time.Second
		}
		switch {
		case len(body) > 4<<10: // the documented cap on /api/token bodies
			if rec.Code != http.StatusRequestEntityTooLarge || errorCode(t, rec) != "body_too_large" {
				t.Fatalf("%d-byte body: %d %s, want 413 body_too_large", len(body), rec.Code,
					rec.Body)
			}
		case grant == "tts" && (!withTTL || expiresIn >= 2 && expiresIn <= 600):
			if !minted || c.ttl != wantTTL {
				t.Fatalf("%s: %d %s, want a %v token", body, rec.Code, rec.Body, wantTTL)
			}
		case grant == "stt" || grant == "agent":
			if rec.Code != http.StatusForbidden || errorCode(t, rec) != "grant_forbidden" {
				t.Fatalf("%s: %d %s, want 403 grant_forbidden", body, rec.Code, rec.Body)
			}
		default:
			if rec.Code != http.StatusBadRequest || errorCode(t, rec) != "bad_request" {
				t.Fatalf("%s: %d %s, want 400 bad_request", body, rec.Code, rec.Body)
			}
		}
	})
}

// FuzzLoginBody: whatever bytes POST /api/login gets, it signs in only for bob's exact
// name and password and answers everything else with a 4xx in our error shape.
func FuzzLoginBody(f *testing.F) {
	for _, b := range []string{
		`{"username":"bob","password":"bob-pw"}`,
		`{"username":"bob","password":"bob-pw","extra":1}`,
		`{"username":"bob","password":"bob-pw"} x`,
		`{"username":"bob","username":"alice","password":"bob-pw"}`,
		`{"username":"bob","password":"wrong"}`,
		`{"username":"BOB","password":"bob-pw"}`,
		`{"username":"bob","password":"bob-pw\u0000"}`,
		`{"username":"","password":""}`,
		`{"username":"bob\n\u001b[31m","password":"x"}`,
		`{"username":"bob","password":"` + strings.Repeat("p", 100) + `"}`,
		`{"username":1,"password":true}`,
		`{"username":"` + strings.Repeat("u", 5000) + `","password":"x"}`,
		`[]`, `null`, ``,
	} {
		f.Add([]byte(b))
	}
	fs := newFuzzServer(f)
	fs.session = nil // the fuzzed sign-ins come without a session

	f.Fuzz(func(t *testing.T, body []byte) {
		rec := fs.post("/api/login", body)
		sectest.CheckAnswer(t, http.MethodPost, "/api/login", rec, fs.logs.Take())

		if rec.Code != http.StatusOK {
			code := errorCode(t, rec)
			if rec.Code >= 500 || !slices.Contains([]string{"bad_request",
				"invalid_credentials", "body_too_large"}, code) {
				t.Fatalf("login answered %d %s", rec.Code, code)
			}
			for _, c := range rec.Result().Cookies() {
				if c.Name == session.CookieName && c.MaxAge >= 0 {
					t.Fatalf("a failed login set a session cookie")
				}
			}
			return
		}

		var in map[string]any
		dec := json.NewDecoder(bytes.NewReader(body))
		if err := dec.Decode(&in); err != nil || len(in) != 2 || in["username"] != "bob" ||
			in["password"] != "bob-pw" {
			t.Fatalf("signed in for %q", body)
		}
		if _, err := dec.Token(); err != io.EOF {
			t.Fatalf("signed in for %q, which has data after the object", body)
		}
		var info struct{ User string }
		if json.Unmarshal(rec.Body.Bytes(), &info) != nil || info.User != "bob" {
			t.Fatalf("login answered %q", rec.Body)
		}

		// Sign out again, so that successes do not fill the session store.
		for _, c := range rec.Result().Cookies() {
			if c.Name == session.CookieName {
				fs.session = &http.Cookie{Name: c.Name, Value: c.Value}
			}
		}
		if out := fs.post("/api/logout", nil); out.Code != http.StatusNoContent {
			t.Fatalf("logout after a fuzzed login: %d", out.Code)
		}
		fs.session = nil
	})
}
