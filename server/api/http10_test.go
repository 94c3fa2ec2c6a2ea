package api_test

import (
	"fmt"
	"testing"
	"time"
)

// TestHTTP10RequestsCloseTheConnection is the HTTP/1.0 twin of the chunked smuggling
// frame. net/http ignores Transfer-Encoding on HTTP/1.0 requests and drops the header, so
// the handler cannot see it; a front end that framed the body by its chunks would have
// sent the request hidden in them as a second one. Every HTTP/1.0 answer therefore closes
// the connection, keep-alive asked or not, and the hidden request is never answered.
func TestHTTP10RequestsCloseTheConnection(t *testing.T) {
	h := newHarness(t)
	hidden := "GET /api/info HTTP/1.1\r\nHost: " + h.host + "\r\n\r\n"
	chunkHead := fmt.Sprintf("%x\r\n", len(hidden))
	smuggle := "POST /api/login HTTP/1.0\r\nHost: " + h.host + "\r\nX-CSRF: 1\r\n" +
		"Content-Type: application/json\r\nConnection: keep-alive\r\n" +
		fmt.Sprintf("Content-Length: %d\r\n", len(chunkHead)) +
		"Transfer-Encoding: chunked\r\n\r\n" + chunkHead + hidden + "\r\n0\r\n\r\n"

	tests := []struct {
		name, text string
		status     int
	}{
		{"Content-Length and chunked, keep-alive", smuggle, 400},
		{"a keep-alive GET", "GET /healthz HTTP/1.0\r\nHost: " + h.host +
			"\r\nConnection: keep-alive\r\n\r\n" + hidden, 200},
		{"a keep-alive POST", "POST /api/token HTTP/1.0\r\nHost: " + h.host +
			"\r\nConnection: keep-alive\r\nX-CSRF: 1\r\nContent-Type: application/json\r\n" +
			"Content-Length: 15\r\n\r\n{\"grant\":\"tts\"}" + hidden, 401},
	}
	for _, tt := range tests {
		a := h.rawExchange(tt.text, 5*time.Second)
		if a.status != tt.status || !a.closed || a.header.Get("Connection") == "keep-alive" {
			t.Errorf("%s: %d, Connection %q, closed %v; want %d and the connection closed "+
				"before any second answer", tt.name, a.status, a.header.Get("Connection"),
				a.closed, tt.status)
		}
	}
}
