//go:build js && wasm

package jsx

import (
	"fmt"

	"github.com/hack-pad/safejs"
)

// Uint8Array copies b into a new JavaScript Uint8Array.
func Uint8Array(b []byte) (safejs.Value, error) {
	ctor, err := safejs.Global().Get("Uint8Array")
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: new Uint8Array: %w", err)
	}
	arr, err := ctor.New(len(b))
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: new Uint8Array: %w", err)
	}
	if _, err := safejs.CopyBytesToJS(arr, b); err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: copy to Uint8Array: %w", err)
	}
	return arr, nil
}

// Bytes copies a JavaScript Uint8Array or ArrayBuffer into a new Go slice.
func Bytes(v safejs.Value) ([]byte, error) {
	arr := v
	buffer, err := safejs.Global().Get("ArrayBuffer")
	if err != nil {
		return nil, fmt.Errorf("jsx: bytes: %w", err)
	}
	if isBuffer, _ := v.InstanceOf(buffer); isBuffer {
		ctor, err := safejs.Global().Get("Uint8Array")
		if err != nil {
			return nil, fmt.Errorf("jsx: bytes: %w", err)
		}
		if arr, err = ctor.New(v); err != nil {
			return nil, fmt.Errorf("jsx: bytes: view ArrayBuffer: %w", err)
		}
	}

	n, err := arr.Length()
	if err != nil {
		return nil, fmt.Errorf("jsx: bytes: length: %w", err)
	}
	b := make([]byte, n)
	if _, err := safejs.CopyBytesToGo(b, arr); err != nil {
		return nil, fmt.Errorf("jsx: bytes: copy: %w", err)
	}
	return b, nil
}
