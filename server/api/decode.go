package api

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"reflect"
	"strings"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/token"
)

// maxJSONBody caps every /api request body; the largest legitimate one is a sign-in.
const maxJSONBody = 4 << 10

// errBodyTimeout marks a body that did not arrive within Config.BodyTimeout.
var errBodyTimeout = errors.New("api: body read timed out")

// errBodyTooLarge marks a body over maxJSONBody.
var errBodyTooLarge = errors.New("api: body too large")

// decodeJSON reads one JSON object from r into v, a pointer to a struct with json tags:
// at most maxJSONBody bytes, every key exactly one of v's (encoding/json alone would also
// take "GRANT" or "ſrant" for "grant"), no key twice, nothing after the object. On
// failure it has already answered 413 body_too_large or 400 bad_request and returns false.
func (s *server) decodeJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	err := readJSON(w, r, v, s.cfg.BodyTimeout)
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

// readJSON reads and decodes the body, which must arrive within timeout.
func readJSON(w http.ResponseWriter, r *http.Request, v any, timeout time.Duration) error {
	raw, err := proxy.ReadBody(w, r, maxJSONBody, timeout)
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

	if err := checkObjectKeys(raw, fieldNames(v)); err != nil {
		return err
	}

	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return decodeError(err)
	}
	// dec.More reports false before a stray "}" or "]", so the rest is read as a token:
	// only the end of the input may follow the object.
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("invalid request body: data after the JSON object")
	}
	return nil
}

// checkObjectKeys insists on a single top-level JSON object whose keys are unique and each
// exactly one of known. With a repeated key encoding/json keeps the last value, and it
// matches names without regard to case: either way a check and its use could disagree
// about which value counts.
func checkObjectKeys(raw []byte, known map[string]bool) error {
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
		if !known[key] {
			return fmt.Errorf("unknown field %q", truncate(key, 32))
		}
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

// fieldNames is the set of JSON names of the fields of the struct v points to.
func fieldNames(v any) map[string]bool {
	t := reflect.TypeOf(v).Elem()
	names := make(map[string]bool, t.NumField())
	for f := range t.Fields() {
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" || !f.IsExported() {
			continue
		}
		if name == "" {
			name = f.Name
		}
		names[name] = true
	}
	return names
}

// decodeError turns a decoding failure into a message in the API's terms: the field and
// the kind of JSON value it takes, never Go's struct or type names, nor the value sent.
func decodeError(err error) error {
	var typeErr *json.UnmarshalTypeError
	var syntaxErr *json.SyntaxError
	switch {
	case errors.As(err, &typeErr) && typeErr.Field != "":
		return fmt.Errorf("the field %q must be %s", truncate(typeErr.Field, 32),
			jsonKind(typeErr.Type))
	case errors.As(err, &syntaxErr), errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("the request body is not valid JSON")
	}
	return errors.New("the request body does not have the expected fields")
}

// jsonKind names the JSON value a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch t.Kind() {
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return "a number"
	case reflect.Slice, reflect.Array:
		return "an array"
	}
	return "an object"
}

// truncate shortens client text before it is echoed in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
