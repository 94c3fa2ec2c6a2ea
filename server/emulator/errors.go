package emulator

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"
)

// Error codes of the emulator (see the package documentation for when each is used).
const (
	codeVersionRequired   = "version_required"
	codeInvalidVersion    = "invalid_version"
	codeInvalidRequest    = "invalid_request"
	codeModelNotFound     = "model_not_found"
	codeUnsupported       = "unsupported_by_emulator"
	codeUnauthorized      = "unauthorized"
	codeTokenExpired      = "token_expired"
	codeAPIKeyRequired    = "api_key_required"
	codeInsufficientGrant = "insufficient_grant"
	codeNotFound          = "not_found"
	codeMethodNotAllowed  = "method_not_allowed"
	codeTooLarge          = "request_too_large"
	codeInternal          = "internal_error"
)

// apiError is an error answer prepared by a parser, written later by call.fail.
type apiError struct {
	status  int
	code    string
	title   string
	message string
}

// badRequest is the common 400 for a body that breaks the contract.
func badRequest(format string, args ...any) *apiError {
	return &apiError{http.StatusBadRequest, codeInvalidRequest, "Invalid request",
		fmt.Sprintf(format, args...)}
}

// errorBody is the JSON error of Cartesia-Version 2026-03-01 and later (reference §7.1).
type errorBody struct {
	ErrorCode string `json:"error_code"`
	Title     string `json:"title"`
	Message   string `json:"message"`
	RequestID string `json:"request_id"`
}

// fail answers the call with an error in the shape its Cartesia-Version expects.
func (c *call) fail(status int, code, title, message string) {
	c.errorCode = code
	h := c.w.Header()
	h.Set("Cache-Control", "no-store")

	if c.legacyErrors() {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("X-Content-Type-Options", "nosniff")
		c.w.WriteHeader(status)
		_, _ = fmt.Fprintf(c.w, "%s: %s", title, message)
		return
	}
	c.writeJSON(status, errorBody{ErrorCode: code, Title: title, Message: message, RequestID: c.id})
}

// failWith writes a prepared error.
func (c *call) failWith(err *apiError) {
	c.fail(err.status, err.code, err.title, err.message)
}

// legacyErrors reports whether the caller asked for a version before structured errors.
// A missing or malformed version gets the current (structured) shape: such a caller has
// not opted into any old behaviour, and JSON is the more useful answer.
func (c *call) legacyErrors() bool {
	return c.version != "" && !c.versionBad && c.version < structuredErrorsSince
}

// writeJSON writes v as the JSON response body.
func (c *call) writeJSON(status int, v any) {
	c.w.Header().Set("Content-Type", "application/json")
	c.w.WriteHeader(status)
	_ = json.NewEncoder(c.w).Encode(v)
}

// requestVersion returns the Cartesia-Version of r and whether it is malformed. The
// cartesia_version query parameter wins over the header (reference §1.2).
func requestVersion(r *http.Request) (version string, malformed bool) {
	version = r.Header.Get("Cartesia-Version")
	if q := r.URL.Query(); q.Has("cartesia_version") {
		version = q.Get("cartesia_version")
	}
	if version == "" {
		return "", false
	}
	if _, err := time.Parse(time.DateOnly, version); err != nil {
		return version, true
	}
	return version, false
}

// checkVersion answers 400 when the route needs a Cartesia-Version and the call has none
// or a malformed one.
func (c *call) checkVersion() bool {
	switch {
	case c.version == "":
		c.fail(http.StatusBadRequest, codeVersionRequired, "Missing Cartesia-Version",
			"the Cartesia-Version header is mandatory (Cartesia's docs require it on every "+
				"request); send a date such as Cartesia-Version: "+structuredErrorsSince+
				", or the cartesia_version query parameter")
		return false
	case c.versionBad:
		c.fail(http.StatusBadRequest, codeInvalidVersion, "Invalid Cartesia-Version",
			fmt.Sprintf("Cartesia-Version %q is not a date in YYYY-MM-DD form, such as %s",
				truncate(c.version, 40), structuredErrorsSince))
		return false
	}
	return true
}

// truncate shortens client input before it is echoed in a message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
