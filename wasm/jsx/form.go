//go:build js && wasm

package jsx

import (
	"fmt"

	"github.com/hack-pad/safejs"
)

// Blob returns a new JavaScript Blob holding a copy of b with the given MIME type.
func Blob(b []byte, typ string) (safejs.Value, error) {
	arr, err := Uint8Array(b)
	if err != nil {
		return safejs.Undefined(), err
	}
	return BlobOf(arr, typ)
}

// BlobOf returns a new Blob of a JavaScript Uint8Array, ArrayBuffer or Blob, without
// copying it through Go.
func BlobOf(v safejs.Value, typ string) (safejs.Value, error) {
	ctor, err := safejs.Global().Get("Blob")
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: new Blob: %w", err)
	}
	opts := map[string]any{}
	if typ != "" {
		opts["type"] = typ
	}
	blob, err := ctor.New([]any{v}, opts)
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: new Blob: %w", err)
	}
	return blob, nil
}

// IsBlob reports whether v is a Blob (a File is one too).
func IsBlob(v safejs.Value) bool {
	ctor, err := safejs.Global().Get("Blob")
	if err != nil || v.Type() != safejs.TypeObject {
		return false
	}
	ok, _ := v.InstanceOf(ctor)
	return ok
}

// Form is a JavaScript FormData being built. fetch encodes it as multipart/form-data with
// a boundary it chooses, and streams Blob parts from wherever the browser keeps them.
type Form struct {
	v safejs.Value
}

// NewForm returns an empty FormData.
func NewForm() (*Form, error) {
	ctor, err := safejs.Global().Get("FormData")
	if err != nil {
		return nil, fmt.Errorf("jsx: new FormData: %w", err)
	}
	v, err := ctor.New()
	if err != nil {
		return nil, fmt.Errorf("jsx: new FormData: %w", err)
	}
	return &Form{v: v}, nil
}

// Set appends a text field.
func (f *Form) Set(name, value string) error {
	if _, err := f.v.Call("append", name, value); err != nil {
		return fmt.Errorf("jsx: form field %s: %w", name, err)
	}
	return nil
}

// SetBlob appends a file field holding blob, named filename.
func (f *Form) SetBlob(name string, blob safejs.Value, filename string) error {
	if _, err := f.v.Call("append", name, blob, filename); err != nil {
		return fmt.Errorf("jsx: form file %s: %w", name, err)
	}
	return nil
}

// Value returns the FormData, to pass as Request.JSBody.
func (f *Form) Value() safejs.Value { return f.v }
