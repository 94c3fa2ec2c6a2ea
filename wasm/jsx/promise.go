//go:build js && wasm

package jsx

import (
	"errors"
	"fmt"

	"github.com/hack-pad/safejs"
)

// Valuer is implemented by errors that choose how JavaScript sees them when they reject a
// Promise made by Promise. JSValue returns anything safejs accepts as a value (maps of
// basic values become plain objects).
type Valuer interface {
	JSValue() any
}

// Promise returns a JavaScript Promise settled by fn, which runs in its own goroutine (so
// it may Await and fetch). A value fn returns resolves the Promise; an error rejects it
// with the error's JSValue when it is a Valuer and with a JavaScript Error otherwise. A
// panic in fn rejects the Promise instead of killing the module.
//
// Promise itself never blocks, so js.Func callbacks may return its result directly.
func Promise(fn func() (any, error)) (safejs.Value, error) {
	var resolve, reject safejs.Value
	executor, err := FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		if len(args) >= 2 {
			resolve, reject = args[0], args[1]
		}
		return nil
	})
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: promise: %w", err)
	}
	defer executor.Release() // the executor runs synchronously inside new Promise

	ctor, err := safejs.Global().Get("Promise")
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: promise: %w", err)
	}
	p, err := ctor.New(executor.Value())
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: promise: %w", err)
	}

	go func() {
		v, err := protect(fn)
		if err == nil {
			if _, err = resolve.Invoke(v); err == nil {
				return
			}
			err = fmt.Errorf("jsx: resolve with %T: %w", v, err)
		}
		if _, rerr := reject.Invoke(rejection(err)); rerr != nil {
			// A rejection that cannot be delivered leaves a Promise pending forever;
			// fall back to the plainest value there is.
			_, _ = reject.Invoke(err.Error())
		}
	}()
	return p, nil
}

// protect runs fn, turning a panic into an error.
func protect(fn func() (any, error)) (v any, err error) {
	defer func() {
		if r := recover(); r != nil {
			v, err = nil, fmt.Errorf("jsx: panic: %v", r)
		}
	}()
	return fn()
}

// rejection is the JavaScript value a Promise is rejected with for err.
func rejection(err error) any {
	var v Valuer
	if errors.As(err, &v) {
		return v.JSValue()
	}
	ctor, gerr := safejs.Global().Get("Error")
	if gerr != nil {
		return err.Error()
	}
	e, nerr := ctor.New(err.Error())
	if nerr != nil {
		return err.Error()
	}
	return e
}
