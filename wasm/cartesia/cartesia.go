// Package cartesia encodes the messages the browser client sends to Cartesia's streaming
// endpoints and decodes the ones it receives: TTS events (SSE and WebSocket), STT and turn
// events, the agent call protocol (base64 media frames), and the query strings of the STT
// WebSockets.
//
// It owns Cartesia's wire format as the client sees it (field names, the base64 framing,
// error events) and nothing else: it never does I/O, never sees a token (the server adds
// credentials) and never touches JavaScript, so it builds and tests natively as well as
// under GOOS=js.
package cartesia

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// APIError is an error event Cartesia sent on a stream (SSE, TTS, STT or agent), in
// either the 2026-03-01 shape or the legacy one with a single "error" string.
type APIError struct {
	// StatusCode is the HTTP-like status in the event, 0 when absent.
	StatusCode int `json:"status_code"`

	// ErrorCode is Cartesia's machine code, empty when absent.
	ErrorCode string `json:"error_code"`

	// Title is the short description.
	Title string `json:"title"`

	// Message is the long description (legacy events: the "error" string).
	Message string `json:"message"`

	// RequestID identifies the request in Cartesia's logs.
	RequestID string `json:"request_id"`
}

// Error returns "cartesia: title: message (status)".
func (e *APIError) Error() string {
	s := "cartesia: "
	if e.Title != "" {
		s += e.Title + ": "
	}
	s += e.Message
	if e.StatusCode != 0 {
		s += " (" + strconv.Itoa(e.StatusCode) + ")"
	}
	return s
}

// decodeError reads an error event; legacy events carry the text in "error".
func decodeError(raw []byte) *APIError {
	var aux struct {
		APIError
		Legacy json.RawMessage `json:"error"`
	}
	e := &APIError{Message: "error event"}
	if json.Unmarshal(raw, &aux) != nil {
		return e
	}
	*e = aux.APIError
	var legacy string
	if e.Message == "" && json.Unmarshal(aux.Legacy, &legacy) == nil {
		e.Message = legacy
	}
	if e.Message == "" && e.Title == "" {
		e.Message = "error event without a message"
	}
	return e
}

// typeOf reads the "type" field of a JSON object.
func typeOf(raw []byte) (string, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &head); err != nil {
		return "", fmt.Errorf("cartesia: decode event: %w", err)
	}
	return head.Type, nil
}

// TypeOf returns the "type" field of a JSON event, "" when it has none or is not JSON.
func TypeOf(raw []byte) string {
	t, _ := typeOf(raw)
	return t
}
