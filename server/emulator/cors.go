package emulator

import (
	"net/http"
	"strings"
)

// CORS: in direct mode a browser page calls the emulator itself, from its own origin, as
// it would call Cartesia. The emulator therefore answers like a public API. It
// authenticates by API key or access token, never by cookie or any other ambient
// credential, so letting every origin read its answers gives a page nothing it does not
// already hold; for the same reason Access-Control-Allow-Credentials is never sent.
// Where Cartesia's exact CORS answers are undocumented these are the emulator's choice.
const (
	corsAllowMethods = "GET, POST"
	corsMaxAge       = "600"
	// corsExposeHeaders are the response headers a page may read beyond the safelisted
	// ones: the request id for support, Retry-After for backing off.
	corsExposeHeaders = "Cartesia-Request-Id, Retry-After"
	// maxCORSRequestHeaders bounds how many requested header names are echoed back.
	maxCORSRequestHeaders = 32
)

// corsDefaultHeaders is the Access-Control-Allow-Headers answer when the preflight's own
// list cannot be echoed: what Cartesia's clients send, the official JS SDK included.
var corsDefaultHeaders = strings.Join([]string{
	"authorization", "content-type", "cartesia-version", "x-cartesia-client",
	"x-stainless-arch", "x-stainless-lang", "x-stainless-os", "x-stainless-package-version",
	"x-stainless-retry-count", "x-stainless-runtime", "x-stainless-runtime-version",
	"x-stainless-timeout",
}, ", ")

// cors adds Access-Control-Allow-Origin: * to the answer of every request that carries
// an Origin, and answers a CORS preflight (OPTIONS with Origin and
// Access-Control-Request-Method) itself with 204, reporting true. Preflights need no
// credentials and no Cartesia-Version: browsers send neither on them.
func (c *call) cors() bool {
	r := c.r
	if r.Header.Get("Origin") == "" {
		return false
	}
	h := c.w.Header()
	h.Set("Access-Control-Allow-Origin", "*")
	h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		return false
	}

	c.route = "preflight"
	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	h.Set("Access-Control-Allow-Headers", allowedHeaders(r.Header.Values(
		"Access-Control-Request-Headers")))
	h.Set("Access-Control-Max-Age", corsMaxAge)
	// The allowed headers echo the request's, so caches must key on them.
	h.Add("Vary", "Access-Control-Request-Headers")
	c.w.WriteHeader(http.StatusNoContent)
	return true
}

// allowedHeaders echoes the header names a preflight asks for, lower-cased, when each is
// a valid HTTP token and there are not too many; otherwise it answers
// corsDefaultHeaders. Echoing lets any client header through, as a public API should;
// the check keeps whatever is echoed a well-formed header list.
func allowedHeaders(requested []string) string {
	var names []string
	for _, v := range requested {
		for name := range strings.SplitSeq(v, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if !isToken(name) || len(names) == maxCORSRequestHeaders {
				return corsDefaultHeaders
			}
			names = append(names, name)
		}
	}
	if len(names) == 0 {
		return corsDefaultHeaders
	}
	return strings.Join(names, ", ")
}

// isToken reports whether s is an HTTP token (RFC 9110, section 5.6.2): one or more of
// the visible ASCII characters other than separators.
func isToken(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}
