package api

import (
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strings"

	"github.com/voxgate/voxgate/server/proxy"
)

// CORS answers for Config.CORSOrigins. Only what the page's calls need is approved: the
// two methods the routes use and the two request headers the client sends (X-CSRF and a
// JSON Content-Type). Preflights are cached for ten minutes.
const (
	corsAllowMethods = "GET, POST"
	corsAllowHeaders = "content-type, x-csrf"
	corsMaxAge       = "600"
	// corsExposeHeaders are the answer headers beyond the CORS-safelisted ones that a
	// listed origin's script may read, as a same-origin page can: Retry-After, which the
	// client backs off by, and the upstream ids the proxy relays (proxy's responseHeaders),
	// for support requests and saved files.
	corsExposeHeaders = "Retry-After, Cartesia-Request-Id, Cartesia-File-Id"
)

// CheckCORSOrigin accepts an origin for Config.CORSOrigins: scheme://host[:port] exactly
// as a browser writes it in the Origin header (lower case, no default port, no path, no
// trailing slash), since requests are matched byte for byte. "*" and "null" are refused:
// a wildcard cannot carry credentials, and "null" is the origin of sandboxed frames and
// local files, which any site can produce.
func CheckCORSOrigin(origin string) error {
	if origin == "*" || origin == "null" {
		return fmt.Errorf("api: CORS origin %q is refused: list exact origins "+
			"such as https://app.example.com", origin)
	}
	canonical, _, err := proxy.ParseOrigin(origin)
	if err != nil {
		return fmt.Errorf("api: CORS origin %q is not scheme://host[:port]", origin)
	}
	if origin != strings.ToLower(origin) {
		return fmt.Errorf("api: CORS origin %q has upper-case letters; browsers send "+
			"origins in lower case, so it would never match", origin)
	}
	if canonical != origin {
		return fmt.Errorf("api: CORS origin %q must be written without a path or trailing "+
			"slash (%q)", origin, canonical)
	}
	u, err := url.Parse(origin)
	if err != nil || !validHostname(u.Hostname()) {
		return fmt.Errorf("api: CORS origin %q does not name one host (no wildcards)", origin)
	}
	if u.Scheme == "https" && u.Port() == "443" || u.Scheme == "http" && u.Port() == "80" {
		return fmt.Errorf("api: CORS origin %q names its scheme's default port; browsers "+
			"leave it out, so it would never match", origin)
	}
	return nil
}

// checkCORSScheme refuses a plain-http CORS origin for an https public origin. Anyone on
// the network path of an http page can rewrite it, so its script, allowed to make
// credentialed calls here, would hand that attacker what https protects; browsers also
// treat the two schemes as different sites, so its calls would arrive without the
// session anyway. An http deployment (a developer's machine) may list either scheme.
func checkCORSScheme(publicOrigin, origin string) error {
	if strings.HasPrefix(publicOrigin, "https://") && strings.HasPrefix(origin, "http://") {
		return fmt.Errorf("api: CORS origin %q is plain http while the public origin %q is "+
			"https: list its https:// origin instead", origin, publicOrigin)
	}
	return nil
}

// validHostname accepts a DNS name of lower-case letters, digits, dots and hyphens, or
// an IP address: what a browser writes in an Origin header (IDNs in their xn-- form).
func validHostname(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || strings.HasPrefix(h, ".") || strings.HasSuffix(h, ".") {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '.' || c == '-') {
			return false
		}
	}
	return true
}

// isCORSOrigin reports whether r carries exactly one Origin header and it is one of
// Config.CORSOrigins, byte for byte.
func (s *server) isCORSOrigin(r *http.Request) bool {
	if len(s.corsOrigins) == 0 {
		return false
	}
	origins := r.Header.Values("Origin")
	return len(origins) == 1 && s.corsOrigins[origins[0]]
}

// cors adds the CORS answer for a request from one of Config.CORSOrigins, and answers
// its preflight itself (reporting true). Requests from any other origin, and every
// request when no CORS origin is configured, get no CORS header at all, so the browser
// keeps them from reading the answer. Responses vary by Origin whenever CORS is on, so
// that no cache hands one origin's answer to another. WebSocket upgrades from these
// origins are checked again by the proxy (Config.CORSOrigins is its ExtraOrigins), which
// also refuses a cross-site one.
func (s *server) cors(w http.ResponseWriter, r *http.Request) bool {
	if len(s.corsOrigins) == 0 {
		return false
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !s.isCORSOrigin(r) {
		return false
	}

	h.Set("Access-Control-Allow-Origin", r.Header.Get("Origin"))
	h.Set("Access-Control-Allow-Credentials", "true")
	if r.Method != http.MethodOptions || r.Header.Get("Access-Control-Request-Method") == "" {
		h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
		return false
	}

	h.Set("Access-Control-Allow-Methods", corsAllowMethods)
	h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
	h.Set("Access-Control-Max-Age", corsMaxAge)
	w.WriteHeader(http.StatusNoContent)
	return true
}
