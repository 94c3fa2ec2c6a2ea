// Package leak finds a secret, or a piece of it, in text about to be passed on: an
// upstream answer the proxy relays to the page, or one the wasm client hands to page
// JavaScript in direct mode. Both sides use it, so that what counts as an echo is the
// same on the server and in the browser.
//
// It owns the forms a secret travels in (as sent, and URL-query-escaped) and the rule for
// pieces (a shared run of Run bytes). It imports only strings, bytes and net/url, so
// that it builds into the wasm bundle without net/http.
package leak

import (
	"bytes"
	"net/url"
	"strings"
)

// Run is the shortest run of a secret's bytes that counts as a piece of it in text we
// pass on: 16 bytes of a token's random part are far more than any innocent text shares
// with it by chance, and a thief given runs shorter than that must guess the rest.
const Run = 16

// Forms returns each non-empty secret and, when it differs, its URL-query-escaped form:
// the shapes in which an upstream's echo carries what it was sent (headers, query
// strings). Nil when no secret is set.
func Forms(secrets ...string) []string {
	var forms []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		forms = append(forms, s)
		if esc := url.QueryEscape(s); esc != s {
			forms = append(forms, esc)
		}
	}
	return forms
}

// Needles returns forms as byte slices, made once so that searching bytes allocates
// nothing.
func Needles(forms []string) [][]byte {
	needles := make([][]byte, len(forms))
	for i, f := range forms {
		needles[i] = []byte(f)
	}
	return needles
}

// In reports whether data contains any of needles (see Needles).
func In(data []byte, needles [][]byte) bool {
	for _, n := range needles {
		if bytes.Contains(data, n) {
			return true
		}
	}
	return false
}

// InString reports whether s contains any of forms.
func InString(s string, forms []string) bool {
	for _, f := range forms {
		if strings.Contains(s, f) {
			return true
		}
	}
	return false
}

// SharesRun reports whether s shares a run of Run or more bytes with any of forms. It is
// meant for short texts (close reasons, error messages): it costs len(s) searches of
// each form.
//
// Limitation: a run split by other bytes (a separator every 15 bytes, two SSE data
// lines) is not a run, and passes; only a hostile upstream splits what it echoes.
func SharesRun(s string, forms ...string) bool {
	for i := 0; i+Run <= len(s); i++ {
		for _, f := range forms {
			if strings.Contains(f, s[i:i+Run]) {
				return true
			}
		}
	}
	return false
}
