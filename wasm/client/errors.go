//go:build js && wasm

package client

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/voxgate/voxgate/wasm/cartesia"
	"github.com/voxgate/voxgate/wasm/tracker"
)

// Client-side error codes. Every other code is the server's (see the README's HTTP surface).
const (
	// CodeNetworkError: the request got no HTTP answer.
	CodeNetworkError = "network_error"

	// CodeAborted: the caller's context ended (in JavaScript: the AbortSignal fired).
	CodeAborted = "aborted"

	// CodeClosed: the client was closed.
	CodeClosed = "closed"

	// CodeBadResponse: the server answered with something the client cannot read.
	CodeBadResponse = "bad_response"

	// CodeInvalidRequest: the request could not be encoded as JSON.
	CodeInvalidRequest = "invalid_request"

	// CodeHTTPError: an error status whose body carried no error code.
	CodeHTTPError = "http_error"

	// CodeWSRefused: a WebSocket could not be opened, also after refreshing the token and
	// trying once more. Browsers do not tell pages why an upgrade failed.
	CodeWSRefused = "ws_refused"

	// CodeWSClosed: a WebSocket closed with a code other than 1000 while a stream on it was
	// still open (1008 "session ended" after a logout, 1006 for a lost connection).
	CodeWSClosed = "ws_closed"

	// CodeBadEvent: a stream carried an event the client cannot decode.
	CodeBadEvent = "bad_event"

	// CodeUpstreamError: Cartesia sent an error event on a stream (SSE or WebSocket); the
	// server uses the same code for the HTTP errors it relays.
	CodeUpstreamError = "upstream_error"

	// CodeTokenEcho: the upstream repeated a direct-mode token in an answer or a stream
	// message. The answer was withheld (and the stream ended) so that page JavaScript
	// never receives the token.
	CodeTokenEcho = "token_echo_withheld"
)

// Error is every failure the client reports: the server's JSON error, or a client code.
type Error struct {
	// Code is the server's stable code (token_expired, no_session, ...) or a client code.
	Code string

	// Status is the HTTP status, 0 when there was no answer.
	Status int

	// Message is for people.
	Message string

	// Upstream is what Cartesia said, for errors the server relayed from it.
	Upstream *Upstream

	// Grant is the grant the failed call needed, empty for session calls.
	Grant string

	// RetryAfter is the server's Retry-After, 0 when absent.
	RetryAfter time.Duration

	// Err is the underlying error, if any.
	Err error
}

// Upstream describes an error Cartesia answered, as relayed by the server.
type Upstream struct {
	// Status is Cartesia's HTTP status.
	Status int `json:"status"`

	// ErrorCode is Cartesia's error code.
	ErrorCode string `json:"error_code,omitempty"`

	// Title is Cartesia's short description.
	Title string `json:"title,omitempty"`

	// Message is Cartesia's longer description.
	Message string `json:"message,omitempty"`

	// RequestID identifies the request in Cartesia's logs.
	RequestID string `json:"request_id,omitempty"`
}

// Error returns "voxgate: code (status): message".
func (e *Error) Error() string {
	if e.Status != 0 {
		return fmt.Sprintf("voxgate: %s (%d): %s", e.Code, e.Status, e.Message)
	}
	return fmt.Sprintf("voxgate: %s: %s", e.Code, e.Message)
}

// Unwrap returns the underlying error.
func (e *Error) Unwrap() error { return e.Err }

// AsError returns err as an *Error, translating the tracker's and context errors. The
// grant is filled in when the error does not name one.
func AsError(err error, grant string) *Error {
	if err == nil {
		return nil
	}

	var e *Error
	if errors.As(err, &e) {
		if e.Grant != "" || grant == "" {
			return e
		}
		named := *e
		named.Grant = grant
		return &named
	}

	switch {
	case errors.Is(err, tracker.ErrClosed):
		return &Error{Code: CodeClosed, Message: "the client is closed", Grant: grant, Err: err}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return &Error{Code: CodeAborted, Message: err.Error(), Grant: grant, Err: err}
	}

	var re *tracker.RefreshError
	if errors.As(err, &re) {
		if grant == "" {
			grant = re.Grant
		}
		return &Error{Code: re.Code, Status: re.Status, Message: re.Message, Grant: grant,
			RetryAfter: re.RetryAfter, Err: err}
	}
	return &Error{Code: CodeNetworkError, Message: err.Error(), Grant: grant, Err: err}
}

// streamError turns an error event Cartesia sent on a stream into an *Error with code
// upstream_error (the status is the event's status_code).
func streamError(e *cartesia.APIError, grant string) *Error {
	msg := e.Message
	if e.Title != "" && msg != "" {
		msg = e.Title + ": " + msg
	} else if msg == "" {
		msg = e.Title
	}
	return &Error{Code: CodeUpstreamError, Status: e.StatusCode, Message: msg, Grant: grant,
		Upstream: &Upstream{Status: e.StatusCode, ErrorCode: e.ErrorCode, Title: e.Title,
			Message: e.Message, RequestID: e.RequestID}, Err: e}
}

// badEvent reports an event that could not be decoded.
func badEvent(err error, grant string) *Error {
	return &Error{Code: CodeBadEvent, Message: err.Error(), Grant: grant, Err: err}
}
