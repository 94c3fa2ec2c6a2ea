package sectest

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
)

// DirectTokenRoute is the one response allowed to carry a token: the JSON body of
// POST /api/token/direct hands exactly one to the page in direct mode.
const DirectTokenRoute = "POST /api/token/direct"

// minCookieSecret is the shortest Set-Cookie value treated as a secret: shorter values
// (a deletion's "", a test's "1") would match innocent text.
const minCookieSecret = 16

// tokenText matches a token the fake issues.
var tokenText = regexp.MustCompile(regexp.QuoteMeta(TokenPrefix) + `[0-9]+(_x+)?`)

// Checks are the post-conditions every security test ends with (see the package
// comment). Nil fields are skipped: a test without a fake has no G2 or G3.
type Checks struct {
	Fake      *FakeCartesia
	Evil      *Evil
	Logs      *LogSink
	Responses *Recorder
	// Allowed lists the upstream routes the fake may see, as "METHOD /path" with {name}
	// matching one path segment: typically every proxy route's upstream plus RouteMint.
	// Nil allows none.
	Allowed []string
}

// Guard registers c.Verify to run when the test ends. Call it before starting the
// fake and the server under test: cleanups run last-in first-out, so the check then
// runs after both have shut down. c is read then, so its fields may be filled in after
// the call.
//
// Limitation: a WebSocket relay still open when the test ends writes its log event
// only once its upstream leg closes, which may be after the check; close sockets in the
// test to have their events checked.
func Guard(t testing.TB, c *Checks) {
	t.Helper()
	t.Cleanup(func() { c.Verify(t) })
}

// Verify asserts G1-G4 now, reporting each violation with t.Errorf.
func (c *Checks) Verify(t testing.TB) {
	t.Helper()
	c.verifyNoLeaks(t)
	c.verifyKeyOnlyOnMint(t)
	c.verifyRoutes(t)
	if c.Evil != nil && c.Evil.Connections() != 0 {
		t.Errorf("G4: the evil listener accepted %d connection(s)", c.Evil.Connections())
	}
}

// CheckAnswer asserts G1 for one answer a handler wrote to rec in process and the log
// text it caused: for a fuzz target, which checks each input on its own and keeps
// nothing between inputs (see LogSink.Take).
func CheckAnswer(t testing.TB, method, path string, rec *httptest.ResponseRecorder,
	logs string) {
	t.Helper()
	sink, answers := &LogSink{}, &Recorder{}
	_, _ = sink.Write([]byte(logs))
	answers.Note(method, path, rec.Code, rec.Header(), rec.Body.Bytes())
	(&Checks{Logs: sink, Responses: answers}).Verify(t)
}

// secret is text that must not appear, with how to name it in a failure.
type secret struct{ text, name string }

// secrets lists the key, the token prefix (every issued token has it), "access_token="
// and, when withCookies, the value of every cookie the server set.
func (c *Checks) secrets(withCookies bool) []secret {
	out := []secret{{CanaryKey, "the API key"}, {TokenPrefix, "an access token"},
		{"access_token=", `"access_token="`}}
	if !withCookies || c.Responses == nil {
		return out
	}
	seen := map[string]bool{}
	for _, r := range c.Responses.Responses() {
		for _, line := range r.Header.Values("Set-Cookie") {
			ck, err := http.ParseSetCookie(line)
			if err != nil || len(ck.Value) < minCookieSecret || seen[ck.Value] {
				continue
			}
			seen[ck.Value] = true
			out = append(out, secret{ck.Value, "the value of cookie " + ck.Name})
		}
	}
	return out
}

// verifyNoLeaks is G1.
func (c *Checks) verifyNoLeaks(t testing.TB) {
	t.Helper()
	all := c.secrets(true)
	if c.Logs != nil {
		for i, line := range strings.Split(c.Logs.String(), "\n") {
			if s, ok := findSecret(line, all); ok {
				t.Errorf("G1: log line %d contains %s: %s", i+1, s.name, excerpt(line, s.text))
			}
		}
	}
	if c.Responses == nil {
		return
	}
	// A Set-Cookie header is where cookie values belong; it is checked for the rest.
	fixed := c.secrets(false)
	for _, r := range c.Responses.Responses() {
		where := fmt.Sprintf("the %d answer to %s %s", r.Status, r.Method, r.Path)
		for name, vals := range r.Header {
			list := all
			if http.CanonicalHeaderKey(name) == "Set-Cookie" {
				list = fixed
			}
			for _, v := range vals {
				if s, ok := findSecret(name+": "+v, list); ok {
					t.Errorf("G1: header %s of %s contains %s: %s", name, where, s.name,
						excerpt(v, s.text))
				}
			}
		}

		body := string(r.Body)
		if r.Method+" "+r.Path == DirectTokenRoute {
			if n := len(tokenText.FindAllString(body, -1)); n > 1 {
				t.Errorf("G1: %s carries %d tokens, want at most one", where, n)
			}
			body = tokenText.ReplaceAllString(body, "")
		}
		if s, ok := findSecret(body, all); ok {
			t.Errorf("G1: the body of %s contains %s: %s", where, s.name, excerpt(body, s.text))
		}
	}
}

// verifyKeyOnlyOnMint is G2: the key appears only as the Authorization header of
// POST /access-token.
func (c *Checks) verifyKeyOnlyOnMint(t testing.TB) {
	t.Helper()
	if c.Fake == nil {
		return
	}
	for _, r := range c.Fake.Requests() {
		h := r.Header.Clone()
		if r.Method+" "+r.Path == RouteMint && len(h.Values("Authorization")) == 1 &&
			h.Get("Authorization") == "Bearer "+CanaryKey {
			h.Del("Authorization")
		}
		parts := []string{r.Path, r.RawQuery, string(r.Body), r.Host}
		for name, vals := range h {
			parts = append(parts, name+": "+strings.Join(vals, ", "))
		}
		for _, p := range parts {
			if strings.Contains(p, CanaryKey) {
				t.Errorf("G2: the fake received the API key on %s %s: %s", r.Method, r.Path,
					excerpt(p, CanaryKey))
				break
			}
		}
	}
}

// verifyRoutes is G3.
func (c *Checks) verifyRoutes(t testing.TB) {
	t.Helper()
	if c.Fake == nil {
		return
	}
	for _, r := range c.Fake.Requests() {
		ok := false
		for _, route := range c.Allowed {
			if matchRoute(route, r.Method, r.Path) {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("G3: the fake received %s %q, which is not an allowed upstream route",
				r.Method, r.Path)
		}
	}
}

// matchRoute reports whether method and path match route, "METHOD /a/{x}/b", where a
// {name} segment matches any one non-empty segment.
func matchRoute(route, method, path string) bool {
	m, p, ok := strings.Cut(route, " ")
	if !ok || m != method {
		return false
	}
	want, got := strings.Split(p, "/"), strings.Split(path, "/")
	if len(want) != len(got) {
		return false
	}
	for i := range want {
		wild := strings.HasPrefix(want[i], "{") && strings.HasSuffix(want[i], "}")
		if wild && got[i] == "" || !wild && want[i] != got[i] {
			return false
		}
	}
	return true
}

// findSecret returns the first secret that occurs in text.
func findSecret(text string, list []secret) (secret, bool) {
	for _, s := range list {
		if strings.Contains(text, s.text) {
			return s, true
		}
	}
	return secret{}, false
}

// excerpt shows where needle sits in text, shortened for a failure message.
func excerpt(text, needle string) string {
	i := strings.Index(text, needle)
	if i < 0 {
		return ""
	}
	lo, hi := max(0, i-60), min(len(text), i+len(needle)+60)
	return fmt.Sprintf("...%q...", text[lo:hi])
}
