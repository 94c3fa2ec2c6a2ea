package token

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/voxgate/voxgate/internal/leak"
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
//
// secrets are the credentials the request carried (the API key, an access token): an
// upstream that echoes what it rejected must not make us repeat it, so each one, and any
// "Bearer <credential>", is replaced by [REDACTED] in every field. Redaction runs before
// fields are shortened, so a cut can never leave part of a secret behind, and a field
// that still shares leak.Run bytes with a secret (an echo missing a character or two)
// is replaced whole.
func ParseUpstreamError(status int, h http.Header, body []byte, secrets ...string) *UpstreamError {
	e := &UpstreamError{Status: status, RetryAfter: CleanRetryAfter(h.Get("Retry-After"))}

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

	forms := leak.Forms(secrets...)
	for _, f := range []*string{&e.Code, &e.Title, &e.Message, &e.RequestID} {
		*f = clean(Redact(*f, secrets...))
		// A field that still holds a piece of a secret (the token less its last
		// characters, its URL-escaped form) goes whole: what is left of it could not be
		// trusted to be free of the rest.
		if leak.SharesRun(*f, forms...) {
			*f = redacted
		}
	}
	return e
}

// bearerCredential matches an Authorization-style credential in free text: the scheme,
// then the RFC 6750 token characters, also after a URL-encoded space.
var bearerCredential = regexp.MustCompile(`(?i)\bbearer(?:\s|%20|\+)+[A-Za-z0-9\-._~+/%]+=*`)

// Redact replaces each secret, and every "Bearer <credential>", in s by [REDACTED].
func Redact(s string, secrets ...string) string {
	for _, sec := range secrets {
		if sec != "" {
			s = strings.ReplaceAll(s, sec, redacted)
		}
	}
	return bearerCredential.ReplaceAllString(s, "Bearer "+redacted)
}

// maxRetryAfterSeconds bounds a delay-seconds Retry-After (about 31 years): a longer
// number is nonsense, and it keeps the value within any client's integer range.
const maxRetryAfterSeconds = 999_999_999

// CleanRetryAfter returns a Retry-After value in one of its two forms (RFC 9110 10.2.3):
// whole seconds, or an HTTP date, re-written in the preferred IMF-fixdate format.
// Anything else yields "", so that upstream cannot make us relay a malformed header.
func CleanRetryAfter(v string) string {
	v = strings.TrimSpace(v)
	if v == "" {
		return ""
	}
	if n, err := strconv.Atoi(v); err == nil {
		if n < 0 || n > maxRetryAfterSeconds || strings.ContainsAny(v, "+-") {
			return ""
		}
		return strconv.Itoa(n)
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return ""
	}
	return t.UTC().Format(http.TimeFormat)
}

// MaxRetryAfter is the longest wait a Retry-After of ours ever names, whether we relay
// upstream's or set our own: a hostile or broken upstream must not be able to park every
// client for hours, and no limit of ours needs a client to wait longer than this.
const MaxRetryAfter = 5 * time.Minute

// CapRetryAfter turns a Retry-After as upstream sent it (either form, see
// CleanRetryAfter) into the value we relay: whole seconds from now, at most
// MaxRetryAfter. A date becomes the seconds until it, rounded up (a date in the past is
// "0"), so that the browser's clock, which may be off, plays no part. A value that is no
// valid Retry-After yields "".
func CapRetryAfter(v string, now time.Time) string {
	v = CleanRetryAfter(v)
	if v == "" {
		return ""
	}
	limit := int(MaxRetryAfter / time.Second)
	if n, err := strconv.Atoi(v); err == nil {
		return strconv.Itoa(min(n, limit))
	}
	at, err := http.ParseTime(v) // CleanRetryAfter left only a valid date
	if err != nil {
		return ""
	}
	wait := at.Sub(now)
	if wait <= 0 {
		return "0"
	}
	if wait >= MaxRetryAfter {
		return strconv.Itoa(limit)
	}
	return strconv.Itoa(int((wait + time.Second - 1) / time.Second))
}

// clean drops control characters (no log or header injection), replaces invalid UTF-8
// and caps the length without cutting a character in two.
func clean(s string) string {
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	s = strings.TrimSpace(s)
	if len(s) > maxErrorField {
		cut := maxErrorField
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		s = s[:cut]
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
