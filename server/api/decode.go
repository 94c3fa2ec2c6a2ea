package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/token"
)

// maxJSONBody caps every /api request body; the largest legitimate one is a sign-in.
const maxJSONBody = 4 << 10

// bodyTimeout bounds reading an /api request body: a few KiB arrive in well under a
// second, and a client trickling bytes must not hold a handler open.
const bodyTimeout = 10 * time.Second

// errBodyTimeout marks a body that did not arrive within bodyTimeout.
var errBodyTimeout = errors.New("api: body read timed out")

// errBodyTooLarge marks a body over maxJSONBody.
var errBodyTooLarge = errors.New("api: body too large")

// decodeJSON reads one JSON object from r into v: at most maxJSONBody bytes, no unknown
// fields, no repeated keys, nothing after the object. On failure it has already answered
// 413 body_too_large or 400 bad_request and returns false.
func decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	err := readJSON(w, r, v)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errBodyTooLarge):
		reply.Error(w, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the request body is over %d bytes", maxJSONBody))
	case errors.Is(err, errBodyTimeout):
		reply.Error(w, http.StatusRequestTimeout, "request_timeout",
			"the request body did not arrive in time")
	default:
		reply.Error(w, http.StatusBadRequest, "bad_request", err.Error())
	}
	return false
}

func readJSON(w http.ResponseWriter, r *http.Request, v any) error {
	raw, err := proxy.ReadBody(w, r, maxJSONBody, bodyTimeout)
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return errBodyTooLarge
	}
	if token.IsTimeout(err) {
		return errBodyTimeout
	}
	if err != nil {
		return errors.New("could not read the request body")
	}

	if err := checkObjectKeys(raw); err != nil {
		return err
	}

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		// The decoder's message names the field and the expected type, never the value.
		return fmt.Errorf("invalid request body: %w", err)
	}
	if dec.More() {
		return errors.New("invalid request body: data after the JSON object")
	}
	return nil
}

// checkObjectKeys insists on a single top-level JSON object whose keys are unique: with a
// repeated key encoding/json keeps the last value, and a check and its use could then
// disagree about which one counts.
func checkObjectKeys(raw []byte) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	tok, err := dec.Token()
	if err != nil || tok != json.Delim('{') {
		return errors.New("the request body must be a JSON object")
	}

	seen := map[string]bool{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return errors.New("the request body is not valid JSON")
		}
		key, _ := tok.(string)
		if seen[key] {
			return fmt.Errorf("the field %q appears twice", truncate(key, 32))
		}
		seen[key] = true

		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return errors.New("the request body is not valid JSON")
		}
	}
	return nil
}

// truncate shortens client text before it is echoed in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
