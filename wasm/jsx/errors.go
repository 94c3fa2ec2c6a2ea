//go:build js && wasm

package jsx

import (
	"fmt"

	"github.com/hack-pad/safejs"
)

// JSError is a JavaScript exception or Promise rejection reason seen from Go.
type JSError struct {
	// Name is the error's name property ("TypeError", "AbortError", ...), empty when the
	// thrown value was not an Error object.
	Name string

	// Message is the error's message, or the thrown value as a string.
	Message string
}

// Error returns "name: message".
func (e *JSError) Error() string {
	if e.Name == "" {
		return "js: " + e.Message
	}
	return "js: " + e.Name + ": " + e.Message
}

// errorOf describes a thrown or rejected JavaScript value.
func errorOf(v safejs.Value) error {
	if v.Type() == safejs.TypeObject {
		name, _ := getString(v, "name")
		msg, _ := getString(v, "message")
		if name != "" || msg != "" {
			return &JSError{Name: name, Message: msg}
		}
	}
	s, err := v.String()
	if err != nil {
		return &JSError{Message: fmt.Sprintf("unprintable value of type %s", v.Type())}
	}
	return &JSError{Message: s}
}

// getString reads a string property, returning "" when it is missing or not a string.
func getString(v safejs.Value, prop string) (string, error) {
	p, err := v.Get(prop)
	if err != nil || p.Type() != safejs.TypeString {
		return "", err
	}
	return p.String()
}
