// Package reply writes the server's JSON responses: successes and the one error shape
// every route shares, {"error": {"code": "...", "message": "..."}}.
//
// Codes are stable machine-readable strings that clients and tests match on; messages are
// for people and may change.
package reply

import (
	"encoding/json"
	"net/http"
)

// Body is the JSON error envelope.
type Body struct {
	Error Detail `json:"error"`
}

// Detail is one error: a stable code, a human message and, for errors relayed from
// Cartesia, what Cartesia said.
type Detail struct {
	Code     string    `json:"code"`
	Message  string    `json:"message"`
	Upstream *Upstream `json:"upstream,omitempty"`
}

// Upstream describes an error answered by the upstream Cartesia API.
type Upstream struct {
	Status    int    `json:"status"`
	ErrorCode string `json:"error_code,omitempty"`
	Title     string `json:"title,omitempty"`
	Message   string `json:"message,omitempty"`
	RequestID string `json:"request_id,omitempty"`
}

// JSON writes v as a JSON response with the given status. Every JSON response of this
// server is private to one user, so none of them may be cached.
func JSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Error writes the error envelope with the given status, code and message.
func Error(w http.ResponseWriter, status int, code, message string) {
	JSON(w, status, Body{Error: Detail{Code: code, Message: message}})
}

// ErrorDetail writes a fully described error, for example one relayed from upstream.
func ErrorDetail(w http.ResponseWriter, status int, d Detail) {
	JSON(w, status, Body{Error: d})
}
