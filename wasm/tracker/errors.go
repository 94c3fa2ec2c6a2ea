package tracker

import (
	"errors"
	"fmt"
	"time"
)

// Codes a RefreshError carries that the tracker itself assigns. Codes the server sends
// (no_session, grant_forbidden, rate_limited, upstream_error, ...) pass through unchanged.
const (
	// CodeNetworkError means the refresh request never got an answer.
	CodeNetworkError = "network_error"

	// CodeRefreshFailed is used when the refresh function failed with an untyped error.
	CodeRefreshFailed = "refresh_failed"

	// CodeBadResponse means the server answered 200 with metadata the tracker cannot use.
	CodeBadResponse = "bad_response"

	// CodeMarginTooLarge means the configured margin is not shorter than the lifetime.
	CodeMarginTooLarge = "margin_too_large"

	// CodeAborted means the caller stopped waiting (its context ended).
	CodeAborted = "aborted"
)

// ErrMarginTooLarge is matched (errors.Is) by the error Ensure returns when the configured
// margin is as long as the token lifetime or longer: every new token would be "expiring"
// on arrival, and refreshing again would loop.
var ErrMarginTooLarge = errors.New("tracker: refresh margin is not shorter than the token lifetime")

// ErrClosed is returned by Ensure and Refresh after Close.
var ErrClosed = errors.New("tracker: closed")

// RefreshError is why a grant's token could not be refreshed.
type RefreshError struct {
	// Grant is the grant whose refresh failed.
	Grant string

	// Code is the server's stable error code (no_session, grant_forbidden, rate_limited,
	// upstream_error, ...) or one of the tracker's Code constants.
	Code string

	// Status is the HTTP status of the answer, 0 when there was none.
	Status int

	// Message is a human-readable description.
	Message string

	// RetryAfter is how long the server asked us to wait (rate_limited), 0 if it did not.
	RetryAfter time.Duration

	// Err is the underlying error, if any (for example the client's own error type).
	Err error
}

// Error describes the failure with its grant and code.
func (e *RefreshError) Error() string {
	msg := e.Message
	if msg == "" && e.Err != nil {
		msg = e.Err.Error()
	}
	if e.Status != 0 {
		return fmt.Sprintf("tracker: refresh %s token: %s (%d): %s", e.Grant, e.Code, e.Status, msg)
	}
	return fmt.Sprintf("tracker: refresh %s token: %s: %s", e.Grant, e.Code, msg)
}

// Unwrap returns the underlying error.
func (e *RefreshError) Unwrap() error { return e.Err }

// Is makes errors.Is(err, ErrMarginTooLarge) hold for margin errors.
func (e *RefreshError) Is(target error) bool {
	return target == ErrMarginTooLarge && e.Code == CodeMarginTooLarge
}

// Temporary reports whether retrying later may succeed: no answer at all, a rate limit or
// a server-side failure. A missing session or a forbidden grant will not heal by waiting.
func (e *RefreshError) Temporary() bool {
	switch {
	case e.Status == 429 || e.Status >= 500:
		return true
	case e.Status != 0:
		return false
	}
	switch e.Code {
	case CodeMarginTooLarge, CodeBadResponse, CodeAborted:
		return false
	}
	return true
}

// asRefreshError returns err as a *RefreshError for grant, wrapping untyped errors.
func asRefreshError(grant string, err error) *RefreshError {
	var re *RefreshError
	if errors.As(err, &re) {
		if re.Grant == grant {
			return re
		}
		named := *re
		named.Grant = grant
		return &named
	}
	return &RefreshError{Grant: grant, Code: CodeRefreshFailed, Message: err.Error(), Err: err}
}
