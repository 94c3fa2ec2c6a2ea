package emulator

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// authMode is what a route accepts as credentials.
type authMode int

const (
	authNone   authMode = iota // public
	authAPIKey                 // the API key only (e.g. minting access tokens)
	authGrant                  // the API key, or an access token carrying the route's grant
)

// Where a credential was presented; for messages, never logged with the value.
const (
	fromBearer     = "Authorization: Bearer"
	fromAPIKey     = "X-API-Key"
	fromQueryToken = "the access_token query parameter"
	fromQueryKey   = "the api_key query parameter"
	credKey        = "api_key"
	credToken      = "access_token"
	bearerMatch    = "bearer "
)

// authenticate checks the call's credentials against the route's mode and answers the
// error itself when they do not pass.
//
// Authorization: Bearer takes precedence over X-API-Key when both are sent. The bearer
// value may be an API key or an access token; X-API-Key takes API keys only (Cartesia
// documents access tokens in Authorization only).
func (c *call) authenticate(mode authMode, grant string) bool {
	value, from, problem := c.presented()
	if problem != "" {
		c.fail(http.StatusUnauthorized, codeUnauthorized, "Unauthorized", problem)
		return false
	}

	if c.e.isAPIKey(value) {
		c.credential = credKey
		return true
	}
	if !looksLikeJWT(value) {
		c.fail(http.StatusUnauthorized, codeUnauthorized, "Unauthorized",
			fmt.Sprintf("the credential in %s is not a valid API key or access token", from))
		return false
	}
	if from == fromAPIKey || from == fromQueryKey {
		c.fail(http.StatusUnauthorized, codeUnauthorized, "Unauthorized",
			"access tokens go in Authorization: Bearer <token> (or the access_token query "+
				"parameter on WebSockets); "+from+" takes API keys only")
		return false
	}

	claims, err := c.e.tokens.verify(value, c.e.now())
	switch {
	case errors.Is(err, errTokenExpired):
		c.fail(http.StatusUnauthorized, codeTokenExpired, "Token expired",
			"the access token has expired; mint a new one with POST /access-token")
		return false
	case err != nil:
		c.fail(http.StatusUnauthorized, codeUnauthorized, "Unauthorized",
			"the access token is not valid (bad signature, key id or claims)")
		return false
	}
	c.credential = credToken

	switch {
	case mode == authAPIKey:
		c.fail(http.StatusForbidden, codeAPIKeyRequired, "API key required",
			"this route needs an API key; access tokens cannot be used here "+
				"(an access token cannot mint access tokens)")
		return false
	case !claims.Grants.allows(grant):
		c.fail(http.StatusForbidden, codeInsufficientGrant, "Insufficient grant",
			fmt.Sprintf("the access token has no %q grant, which %s needs", grant, c.r.URL.Path))
		return false
	}
	return true
}

// presented returns the credential the call carries and where it came from, or a
// problem to report when there is none or the Authorization header is malformed.
//
// Headers come first. A WebSocket upgrade may instead carry the credential in the query
// (reference §3.2): browsers cannot set headers on a WebSocket, so they send
// access_token; servers may send api_key. Plain HTTP requests never read the query, so a
// credential pasted into a URL there is refused rather than silently accepted.
func (c *call) presented() (value, from, problem string) {
	h := c.r.Header
	if h.Get("Authorization") != "" || h.Get("X-API-Key") != "" || !isWebSocketUpgrade(c.r) {
		return presentedHeader(c.r)
	}

	q := c.r.URL.Query()
	switch {
	case q.Get("access_token") != "":
		return strings.TrimSpace(q.Get("access_token")), fromQueryToken, ""
	case q.Get("api_key") != "":
		return strings.TrimSpace(q.Get("api_key")), fromQueryKey, ""
	}
	return "", "", "no credentials: send Authorization: Bearer <API key or access token>, or " +
		"the access_token (or api_key) query parameter"
}

// isWebSocketUpgrade reports whether r asks to switch to the WebSocket protocol.
func isWebSocketUpgrade(r *http.Request) bool {
	if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
		return false
	}
	for _, v := range r.Header.Values("Connection") {
		for _, token := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(token), "upgrade") {
				return true
			}
		}
	}
	return false
}

// presentedHeader is presented for the credential headers alone.
func presentedHeader(r *http.Request) (value, from, problem string) {
	if auth := r.Header.Get("Authorization"); auth != "" {
		scheme := auth[:min(len(auth), len(bearerMatch))]
		if len(auth) <= len(bearerMatch) || !strings.EqualFold(scheme, bearerMatch) {
			return "", "", "the Authorization header must be \"Bearer <API key or access token>\""
		}
		return strings.TrimSpace(auth[len(bearerMatch):]), fromBearer, ""
	}
	if key := r.Header.Get("X-API-Key"); key != "" {
		return strings.TrimSpace(key), fromAPIKey, ""
	}
	return "", "", "no credentials: send X-API-Key: <API key> or Authorization: Bearer <API key " +
		"or access token>"
}

// isAPIKey compares value with every accepted key in constant time. Comparing digests
// keeps the comparison independent of the keys' lengths as well.
func (e *Emulator) isAPIKey(value string) bool {
	digest := sha256.Sum256([]byte(value))
	match := 0
	for _, k := range e.keys {
		match |= subtle.ConstantTimeCompare(digest[:], k[:])
	}
	return match == 1 && value != ""
}
