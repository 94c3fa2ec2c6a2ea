package api

import (
	"mime"
	"net/http"
	"strings"

	"github.com/voxgate/voxgate/server/reply"
)

// contentSecurityPolicy is the Content-Security-Policy of every response. Scripts come
// only from this origin; 'wasm-unsafe-eval' lets the page compile voxgate.wasm without
// also allowing eval() of strings; there is no inline script or style; audio plays from
// blob: URLs. The page connects only to this origin, and in direct mode also to the
// upstream origin and its WebSocket twin (https://h and wss://h), which it calls itself.
func contentSecurityPolicy(direct bool, upstreamOrigin string) string {
	connect := "'self'"
	if direct {
		connect += " " + upstreamOrigin + " " + webSocketTwin(upstreamOrigin)
	}
	return "default-src 'self'; script-src 'self' 'wasm-unsafe-eval'; connect-src " + connect +
		"; media-src 'self' blob:; img-src 'self' data:; style-src 'self'; object-src 'none'; " +
		"base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
}

// webSocketTwin is the ws(s):// origin of an http(s):// origin: CSP's connect-src lists
// WebSocket schemes separately from the HTTP ones.
func webSocketTwin(origin string) string {
	if rest, ok := strings.CutPrefix(origin, "https://"); ok {
		return "wss://" + rest
	}
	return "ws://" + strings.TrimPrefix(origin, "http://")
}

// permissions allows the microphone to this origin (speech-to-text) and turns off the
// powerful features the page never uses.
const permissions = "microphone=(self), camera=(), geolocation=(), payment=(), usb=()"

// securityHeaders sets the headers every response carries, errors included.
func (s *server) securityHeaders(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Security-Policy", s.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Permissions-Policy", permissions)
	if s.hsts {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
}

// isGuarded reports whether a path is an API or proxy route, which get no-store and the
// CSRF and media-type checks.
func isGuarded(path string) bool {
	return strings.HasPrefix(path, "/api/") || strings.HasPrefix(path, "/cartesia/")
}

// csrfExempt lists (method, path) pairs that skip only the X-CSRF header requirement:
// public, side-effect-free reads that the page makes before anyone signs in. They still
// pass the Fetch-Metadata and Origin checks.
var csrfExempt = map[string]bool{
	"GET /api/info":  true,
	"HEAD /api/info": true,
}

// csrfHeaders are the request headers checkCSRF reads, each of which must be single.
// Sec-Fetch-Mode is not checked here (the proxy checks it on upgrades) but must not
// repeat either, so that no later reader can pick a different copy.
var csrfHeaders = []string{"Sec-Fetch-Site", "Sec-Fetch-Mode", "Origin", "X-CSRF"}

// checkCSRF enforces, in order: Sec-Fetch-Site (when the browser sends it) must be
// same-origin; otherwise Origin (when present) must equal the public origin exactly;
// and X-CSRF: 1 must be present, which a cross-site form or simple request cannot add
// without a CORS preflight that this server approves only for Config.CORSOrigins.
//
// A request whose Origin is exactly one of Config.CORSOrigins passes the first two rules
// even when Sec-Fetch-Site says same-site or cross-site: that is what such a page's
// requests look like. It still needs X-CSRF: 1.
//
// WebSocket upgrades (GET on a proxied WebSocket route) are the exception to the last
// rule: browsers cannot add headers to them. The proxy instead requires their Origin to
// be present and exactly the public origin or one of Config.CORSOrigins (then with
// same-origin or same-site Fetch Metadata) before it accepts or dials anything.
//
// Each of these headers may appear at most once: browsers never repeat them, and with
// two copies this check and any later reader could disagree about which one counts.
func (s *server) checkCSRF(w http.ResponseWriter, r *http.Request) bool {
	reason := s.csrfFailure(r)
	if reason == "" {
		return true
	}

	s.reject(r, "csrf_rejected", "check", reason)
	msg := "cross-site or unmarked request refused; send X-CSRF: 1 from the page's own origin"
	if s.isWebSocketUpgrade(r) {
		msg = "WebSocket upgrades are accepted only from pages on " + s.origin
	}
	reply.Error(w, http.StatusForbidden, "csrf_rejected", msg)
	return false
}

// csrfFailure names the check r fails, or returns "" when it passes them all.
func (s *server) csrfFailure(r *http.Request) string {
	for _, name := range csrfHeaders {
		if len(r.Header.Values(name)) > 1 {
			return "repeated_header"
		}
	}

	fromCORSOrigin := s.isCORSOrigin(r)
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" {
		crossOrigin := site == "same-site" || site == "cross-site"
		if site != "same-origin" && !(crossOrigin && fromCORSOrigin) {
			return "sec_fetch_site"
		}
	} else if origin := r.Header.Get("Origin"); origin != "" && origin != s.origin &&
		!fromCORSOrigin {
		return "origin_mismatch"
	}

	if r.Header.Get("X-CSRF") != "1" && !csrfExempt[r.Method+" "+r.URL.Path] &&
		!s.isWebSocketUpgrade(r) {
		return "missing_x_csrf"
	}
	return ""
}

// isWebSocketUpgrade reports whether r is a GET for one of the proxy's WebSocket routes.
// Whether it really asks for an upgrade is the proxy's to check.
func (s *server) isWebSocketUpgrade(r *http.Request) bool {
	return (r.Method == http.MethodGet || r.Method == http.MethodHead) && s.wsRoutes[s.routeOf(r)]
}

// checkMediaType refuses request bodies that are not JSON, except multipart/form-data on
// the proxy's upload routes (and only there: a form is what a cross-site page can post
// without a preflight, so every other route keeps refusing it). A body-less request (no
// Content-Type, Content-Length 0) passes, so POST /api/logout needs no body.
func (s *server) checkMediaType(w http.ResponseWriter, r *http.Request) bool {
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}

	// One Content-Type only: the check reads one value, and forwarding several would let
	// upstream parse the body as a type nobody checked.
	if len(r.Header.Values("Content-Type")) > 1 {
		reply.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			"send exactly one Content-Type header")
		return false
	}
	ct := r.Header.Get("Content-Type")
	if ct == "" && r.ContentLength == 0 {
		return true
	}
	if isJSON(ct) {
		return true
	}
	upload := s.uploadRoutes[s.routeOf(r)]
	if upload && isMultipart(ct) {
		return true
	}
	msg := "request bodies must be application/json"
	if upload {
		msg = "uploads must be multipart/form-data with a boundary"
	}
	reply.Error(w, http.StatusUnsupportedMediaType, "unsupported_media_type", msg)
	return false
}

// isMultipart reports whether a Content-Type is multipart/form-data with a boundary.
func isMultipart(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	return err == nil && mt == "multipart/form-data" && params["boundary"] != ""
}

// isJSON reports whether a Content-Type is application/json, with at most a UTF-8
// charset parameter.
func isJSON(ct string) bool {
	mt, params, err := mime.ParseMediaType(ct)
	if err != nil || mt != "application/json" {
		return false
	}
	for k, v := range params {
		if k != "charset" || !strings.EqualFold(v, "utf-8") {
			return false
		}
	}
	return true
}

// methods dispatches one path by method and answers 405 with Allow for the rest.
type methods map[string]http.HandlerFunc

func (m methods) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if h, ok := m[r.Method]; ok {
		h(w, r)
		return
	}
	if h, ok := m[http.MethodGet]; ok && r.Method == http.MethodHead {
		h(w, r)
		return
	}

	allow := make([]string, 0, len(m)+1)
	for _, meth := range []string{http.MethodGet, http.MethodHead, http.MethodPost} {
		if _, ok := m[meth]; ok || (meth == http.MethodHead && m[http.MethodGet] != nil) {
			allow = append(allow, meth)
		}
	}
	w.Header().Set("Allow", strings.Join(allow, ", "))
	reply.Error(w, http.StatusMethodNotAllowed, "method_not_allowed",
		r.Method+" is not allowed here; use "+strings.Join(allow, " or "))
}
