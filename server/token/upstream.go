package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"unicode"

	"github.com/voxgate/voxgate/server/reply"
)

// maxErrorField caps each text field taken from an upstream error body, so a hostile or
// broken upstream cannot inflate our responses and logs.
const maxErrorField = 512

// UpstreamError is an HTTP error answered by Cartesia (or the emulator): the status plus
// what its body said. Cartesia-Version 2026-03-01 and later send structured JSON; older
// versions may send plain text "Title: Message"; both parse into the same fields.
type UpstreamError struct {
	Status    int
	Code      string // Cartesia's error_code, may be empty
	Title     string
	Message   string
	RequestID string
	// RetryAfter is the upstream's Retry-After header, if it sent one.
	RetryAfter string
}

// Error implements error.
func (e *UpstreamError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "upstream answered %d", e.Status)
	if e.Code != "" {
		fmt.Fprintf(&b, " (%s)", e.Code)
	}
	if e.Title != "" {
		b.WriteString(": " + e.Title)
	}
	if e.Message != "" {
		b.WriteString(": " + e.Message)
	}
	return b.String()
}

// Reply converts the error into the `upstream` object of our JSON error shape.
func (e *UpstreamError) Reply() *reply.Upstream {
	return &reply.Upstream{
		Status:    e.Status,
		ErrorCode: e.Code,
		Title:     e.Title,
		Message:   e.Message,
		RequestID: e.RequestID,
	}
}

// ParseUpstreamError reads an upstream error response's status, headers and (already
// size-limited) body. It never fails: an unparsable body becomes the message text.
func ParseUpstreamError(status int, h http.Header, body []byte) *UpstreamError {
	e := &UpstreamError{Status: status, RetryAfter: clean(h.Get("Retry-After"))}

	var structured struct {
		ErrorCode *string `json:"error_code"`
		Title     string  `json:"title"`
		Message   string  `json:"message"`
		RequestID string  `json:"request_id"`
		// Some gateways answer {"error": "..."}; keep it as the message.
		Error any `json:"error"`
	}
	text := strings.TrimSpace(string(body))

	if err := json.Unmarshal(body, &structured); err == nil && strings.HasPrefix(text, "{") {
		if structured.ErrorCode != nil {
			e.Code = *structured.ErrorCode
		}
		e.Title, e.Message, e.RequestID = structured.Title, structured.Message, structured.RequestID
		if s, ok := structured.Error.(string); ok && e.Message == "" {
			e.Message = s
		}
	} else if title, msg, ok := strings.Cut(text, ": "); ok && !strings.Contains(title, "\n") {
		e.Title, e.Message = title, msg
	} else {
		e.Message = text
	}

	if e.RequestID == "" {
		e.RequestID = h.Get("Cartesia-Request-Id")
	}
	if e.RequestID == "" {
		e.RequestID = h.Get("X-Request-Id")
	}

	e.Code, e.Title = clean(e.Code), clean(e.Title)
	e.Message, e.RequestID = clean(e.Message), clean(e.RequestID)
	return e
}

// clean drops control characters (no log or header injection) and caps the length.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxErrorField {
		s = s[:maxErrorField]
	}
	return s
}

// TransportError reports that no HTTP response came back from upstream: the connection
// failed, or no response headers arrived in time (Timeout).
type TransportError struct {
	Timeout bool
	Err     error
}

// Error implements error.
func (e *TransportError) Error() string {
	if e.Timeout {
		return "upstream did not answer in time: " + e.Err.Error()
	}
	return "upstream unreachable: " + e.Err.Error()
}

// Unwrap returns the underlying network error.
func (e *TransportError) Unwrap() error { return e.Err }

// IsTimeout reports whether err is, or wraps, a timeout: a context deadline or a net.Error
// that says so (for example http.Transport's ResponseHeaderTimeout).
func IsTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) {
		return true
	}
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}
