package api_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/api"
	"github.com/voxgate/voxgate/server/reply"
)

// onAlias is a GET or HEAD of target on the alias host, on a connection that closes after
// the answer (so that the exchange needs no timeout).
func (h *harness) onAlias(method, target string) rawAnswer {
	h.t.Helper()
	return h.rawExchange(method+" "+target+" HTTP/1.1\r\nHost: localhost:9\r\n"+
		"Connection: close\r\n\r\n", 5*time.Second)
}

// withAlias adds localhost:9 as an allowed alias of the public origin's host.
func withAlias(c *api.Config) {
	c.AllowedHosts = []string{c.PublicOrigin[len("http://"):], "localhost:9"}
}

func TestAliasRedirectTakesOnlyAPathFromTheTarget(t *testing.T) {
	h := newHarness(t, withAlias)
	redirected := []struct{ target, want string }{
		{"/", "/"},
		{"/app.js?v=1", "/app.js?v=1"},
		{"/a/../app.js", "/app.js"},
		{"/./x/", "/x/"},
		{"/..//evil.example", "/evil.example"},
		{"/%2F%2Fevil.example", "/%2F%2Fevil.example"},
		{"/\\evil.example", "/%5Cevil.example"},
		{"/@evil.example", "/@evil.example"},
		// Absolute-form, as a forward proxy sends it: only its path and query are kept.
		{"http://localhost:9/app.js?v=1", "/app.js?v=1"},
		{"http://localhost:9", "/"},
		{"HTTPS://localhost:9/./x", "/x"},
	}
	for _, tt := range redirected {
		a := h.onAlias("GET", tt.target)
		if a.status != http.StatusPermanentRedirect || a.header.Get("Location") != h.origin+tt.want {
			t.Errorf("GET %s: %d Location %q, want 308 to %s%s", tt.target, a.status,
				a.header.Get("Location"), h.origin, tt.want)
		}
	}

	refused := []string{"//evil.example", "///evil.example", "x:@evil.example/",
		"javascript:alert(1)", "mailto:@evil.example", "http://localhost:9//evil.example",
		"http://user:pw@localhost:9/", "ftp://localhost:9/x"}
	for _, target := range refused {
		for _, method := range []string{"GET", "HEAD"} {
			a := h.onAlias(method, target)
			var body reply.Body
			_ = json.Unmarshal([]byte(a.body), &body)
			if a.status != http.StatusBadRequest || a.header.Get("Location") != "" ||
				(method == "GET" && body.Error.Code != "bad_request") {
				t.Errorf("%s %s: %d %s Location %q, want 400 bad_request", method, target,
					a.status, a.body, a.header.Get("Location"))
			}
		}
	}
	events := h.logs.Events(t, "security_rejected")
	if len(events) != 2*len(refused) {
		t.Errorf("%d security_rejected events, want one per refusal (%d)", len(events),
			2*len(refused))
	}
	for _, ev := range events {
		if ev["reason"] != "request_target" {
			t.Errorf("security_rejected with reason %v", ev["reason"])
		}
	}

	// On the public host, ServeMux's own redirects take the path alone.
	a := h.rawExchange("GET x:@evil.example/ HTTP/1.1\r\nHost: "+h.host+"\r\n"+
		"Connection: close\r\n\r\n", 5*time.Second)
	if loc := a.header.Get("Location"); loc != "" && loc != "/" {
		t.Errorf("an opaque target on the public host: Location %q", loc)
	}
}

func TestChunkedRequestsCloseTheConnection(t *testing.T) {
	h := newHarness(t)
	head := "POST /api/login HTTP/1.1\r\nHost: " + h.host + "\r\nX-CSRF: 1\r\n" +
		"Content-Type: application/json\r\n"
	login := `{"username":"alice","password":"alice-pw"}`
	chunked := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(login), login)

	tests := []struct {
		name, text string
		status     int
		closes     bool
	}{
		{"chunked", head + "Transfer-Encoding: chunked\r\n\r\n" + chunked, 200, true},
		{"Content-Length and chunked", head + "Content-Length: 5\r\n" +
			"Transfer-Encoding: chunked\r\n\r\n" + chunked, 200, true},
		{"chunked, an error answer", head + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			400, true},
		{"Content-Length alone", head + fmt.Sprintf("Content-Length: %d\r\n\r\n%s",
			len(login), login), 200, false},
	}
	for _, tt := range tests {
		within := 5 * time.Second
		if !tt.closes {
			within = 200 * time.Millisecond // how long to watch for a close that must not come
		}
		a := h.rawExchange(tt.text, within)
		if a.status != tt.status || a.saysClose != tt.closes || a.closed != tt.closes {
			t.Errorf("%s: %d Connection: close %v, closed %v; want %d and closing %v",
				tt.name, a.status, a.saysClose, a.closed, tt.status, tt.closes)
		}
	}
}
