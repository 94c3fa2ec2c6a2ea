//go:build js && wasm

package client

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"time"

	"github.com/voxgate/voxgate/wasm/jsx"
)

// send makes one call to the server and returns a successful response, whose body the
// caller must consume or Close. An error status becomes an *Error; a 401 no_session also
// ends the session.
func (c *Client) send(ctx context.Context, method, path string, body []byte) (*jsx.Response,
	error) {
	req := jsx.Request{Method: method, URL: path, Header: map[string]string{}, Body: body}
	if body != nil {
		req.Header["Content-Type"] = "application/json"
	}
	return c.do(ctx, req)
}

// do sends req (URL relative to the server) with X-CSRF added, like send.
func (c *Client) do(ctx context.Context, req jsx.Request) (*jsx.Response, error) {
	method, path := req.Method, req.URL
	req.URL = c.base + path
	if req.Header == nil {
		req.Header = map[string]string{}
	}
	req.Header["X-CSRF"] = "1" // required on every cookie-authenticated call
	if c.base != "" {
		// A server named by BaseURL may be on another (CORS_ORIGINS) origin; "include"
		// sends its cookies there too, and is "same-origin" for the page's own.
		req.Credentials = "include"
	}

	resp, err := jsx.Fetch(ctx, req)
	if err != nil {
		if cerr := ctx.Err(); cerr != nil {
			return nil, &Error{Code: CodeAborted, Message: method + " " + path + ": " + cerr.Error(),
				Err: err}
		}
		return nil, &Error{Code: CodeNetworkError, Message: method + " " + path + ": " + err.Error(),
			Err: err}
	}
	if resp.Status < 400 {
		return resp, nil
	}

	e := decodeError(resp)
	if e.Status == 401 && e.Code == "no_session" {
		c.sessionEnded("no_session", false)
	}
	return nil, e
}

// callJSON sends in (when non-nil) as JSON and decodes the answer into out (when non-nil
// and the answer has a body).
func (c *Client) callJSON(ctx context.Context, method, path string, in, out any) error {
	var body []byte
	if in != nil {
		var err error
		if body, err = marshal(in); err != nil {
			return err
		}
	}

	resp, err := c.send(ctx, method, path, body)
	if err != nil {
		return err
	}
	raw, err := resp.Bytes()
	if err != nil {
		return readError(ctx, method, path, err)
	}
	if out == nil || resp.Status == 204 {
		return nil
	}
	if err := json.Unmarshal(raw, out); err != nil {
		return &Error{Code: CodeBadResponse, Status: resp.Status,
			Message: fmt.Sprintf("%s %s: decode answer: %v", method, path, err), Err: err}
	}
	return nil
}

// readError classifies a failure while reading a response body.
func readError(ctx context.Context, method, path string, err error) *Error {
	code := CodeNetworkError
	if ctx.Err() != nil {
		code = CodeAborted
	}
	return &Error{Code: code, Message: method + " " + path + ": " + err.Error(), Err: err}
}

// errorBody is the server's error envelope, {"error": {"code", "message", "upstream"}}.
type errorBody struct {
	Error struct {
		Code     string    `json:"code"`
		Message  string    `json:"message"`
		Upstream *Upstream `json:"upstream"`
	} `json:"error"`
}

// maxErrorBody bounds how much of an error answer is read; the envelope is small and an
// upstream might answer an error with a large page.
const maxErrorBody = 64 << 10

// decodeError turns an error response into an *Error and releases the response.
func decodeError(resp *jsx.Response) *Error {
	defer resp.Close()

	e := &Error{Status: resp.Status, Code: CodeHTTPError,
		Message: "HTTP " + strconv.Itoa(resp.Status), RetryAfter: retryAfter(resp)}
	raw, err := readLimited(resp, maxErrorBody)
	if err != nil {
		return e
	}
	var body errorBody
	if json.Unmarshal(raw, &body) != nil || body.Error.Code == "" {
		return e
	}
	e.Code = body.Error.Code
	e.Message = body.Error.Message
	e.Upstream = body.Error.Upstream
	return e
}

// readLimited reads at most limit bytes of the body.
func readLimited(resp *jsx.Response, limit int64) ([]byte, error) {
	body, err := resp.Body()
	if err != nil {
		return nil, err
	}
	defer body.Close()
	return io.ReadAll(io.LimitReader(body, limit))
}

// maxRetryAfterSeconds caps a Retry-After, as the server does (token.MaxRetryAfter).
const maxRetryAfterSeconds = 300

// retryAfter reads a Retry-After header given in seconds (the form the server uses).
//
// Limitation: the HTTP-date form of Retry-After is ignored (read as no delay).
func retryAfter(resp *jsx.Response) time.Duration {
	s := resp.Header("Retry-After")
	if s == "" {
		return 0
	}
	secs, err := strconv.Atoi(s)
	if err != nil || secs < 0 {
		return 0
	}
	// The server never asks for more than five minutes; an upstream answering a direct
	// call might, and a page must not stay stuck for longer on its word.
	return time.Duration(min(secs, maxRetryAfterSeconds)) * time.Second
}
