package emulator

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
)

// readBody reads the request body up to limit bytes and answers 413 itself when it is
// longer.
func (c *call) readBody(limit int64) ([]byte, bool) {
	body, err := io.ReadAll(http.MaxBytesReader(c.w, c.r.Body, limit))
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &tooLarge):
		c.fail(http.StatusRequestEntityTooLarge, codeTooLarge, "Request too large",
			fmt.Sprintf("the request body is larger than %d KiB", limit>>10))
		return nil, false
	case err != nil:
		c.fail(http.StatusBadRequest, codeInvalidRequest, "Invalid request",
			"the request body could not be read")
		return nil, false
	}
	return body, true
}

// object is a parsed JSON object whose fields are decoded on demand, so that a wrong
// type is reported with the field's full name (for example output_format.encoding).
type object struct {
	fields map[string]json.RawMessage
	path   string // "" for the body, "output_format." for a nested object
}

// parseObject parses a body that must be exactly one JSON object. Duplicate keys at any
// depth are rejected: encoding/json would silently keep the last one, and two readers of
// the same body could then disagree.
func parseObject(body []byte) (object, *apiError) {
	if err := checkJSON(body); err != nil {
		return object{}, badRequest("the body is not valid JSON: %v", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(body, &fields); err != nil || fields == nil {
		return object{}, badRequest("the body must be a JSON object")
	}
	return object{fields: fields}, nil
}

// checkJSON verifies that data is one JSON value without duplicate object keys.
func checkJSON(data []byte) error {
	if len(bytes.TrimSpace(data)) == 0 {
		return errors.New("empty body")
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := walkJSON(dec, ""); err != nil {
		return err
	}
	if _, err := dec.Token(); err != io.EOF {
		return errors.New("unexpected data after the JSON value")
	}
	return nil
}

func walkJSON(dec *json.Decoder, path string) error {
	tok, err := dec.Token()
	if err != nil {
		if err == io.EOF {
			return io.ErrUnexpectedEOF // a value was due
		}
		return err
	}
	switch tok {
	case json.Delim('{'):
		seen := map[string]bool{}
		for dec.More() {
			keyTok, err := dec.Token()
			if err != nil {
				return err
			}
			key, _ := keyTok.(string)
			if seen[key] {
				return fmt.Errorf("duplicate key %q", path+key)
			}
			seen[key] = true
			if err := walkJSON(dec, path+key+"."); err != nil {
				return err
			}
		}
	case json.Delim('['):
		for dec.More() {
			if err := walkJSON(dec, path); err != nil {
				return err
			}
		}
	default:
		return nil
	}
	_, err = dec.Token() // the closing delimiter
	return err
}

// name is the full name of a field, for messages.
func (o object) name(key string) string {
	return o.path + key
}

// has reports whether the field is present and not null.
func (o object) has(key string) bool {
	raw, ok := o.fields[key]
	return ok && string(raw) != "null"
}

// str returns a string field; present is false when it is missing or null.
func (o object) str(key string) (value string, present bool, err *apiError) {
	if !o.has(key) {
		return "", false, nil
	}
	if err := json.Unmarshal(o.fields[key], &value); err != nil {
		return "", true, badRequest("%s must be a string", o.name(key))
	}
	return value, true, nil
}

// boolean returns a boolean field; present is false when it is missing or null.
func (o object) boolean(key string) (value, present bool, err *apiError) {
	if !o.has(key) {
		return false, false, nil
	}
	if err := json.Unmarshal(o.fields[key], &value); err != nil {
		return false, true, badRequest("%s must be true or false", o.name(key))
	}
	return value, true, nil
}

// number returns a numeric field; present is false when it is missing or null.
func (o object) number(key string) (value float64, present bool, err *apiError) {
	if !o.has(key) {
		return 0, false, nil
	}
	if err := json.Unmarshal(o.fields[key], &value); err != nil {
		return 0, true, badRequest("%s must be a number", o.name(key))
	}
	return value, true, nil
}

// integer returns a field that must be written as a JSON integer (not 60.0, 6e1 or
// "60"); present is false when it is missing or null.
func (o object) integer(key string) (value int64, present bool, err *apiError) {
	if !o.has(key) {
		return 0, false, nil
	}
	value, perr := strconv.ParseInt(string(bytes.TrimSpace(o.fields[key])), 10, 64)
	switch {
	case errors.Is(perr, strconv.ErrRange):
		return 0, true, badRequest("%s is far out of range", o.name(key))
	case perr != nil:
		return 0, true, badRequest("%s must be an integer", o.name(key))
	}
	return value, true, nil
}

// object returns a nested object field; present is false when it is missing or null.
func (o object) object(key string) (value object, present bool, err *apiError) {
	if !o.has(key) {
		return object{}, false, nil
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(o.fields[key], &fields); err != nil {
		return object{}, true, badRequest("%s must be an object", o.name(key))
	}
	return object{fields: fields, path: o.name(key) + "."}, true, nil
}

// isString reports whether the field holds a JSON string.
func (o object) isString(key string) bool {
	raw := bytes.TrimSpace(o.fields[key])
	return len(raw) > 0 && raw[0] == '"'
}
