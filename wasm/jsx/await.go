//go:build js && wasm

package jsx

import (
	"context"
	"fmt"
	"sync"

	"github.com/hack-pad/safejs"
)

// Await blocks the calling goroutine until the JavaScript Promise (or thenable, or plain
// value) p settles or ctx ends. A rejection comes back as a *JSError.
//
// Never call Await from a js.Func callback's own goroutine: the event loop that would
// settle p is paused until the callback returns, so the program deadlocks.
func Await(ctx context.Context, p safejs.Value) (safejs.Value, error) {
	promise, err := safejs.Global().Get("Promise")
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: await: %w", err)
	}
	p, err = promise.Call("resolve", p)
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: await: %w", err)
	}

	type outcome struct {
		v   safejs.Value
		err error
	}
	settled := make(chan outcome, 1) // buffered: a callback must never block

	// The two callbacks are released when the Promise settles, not when ctx ends: a
	// Promise that settles later would otherwise call a released function.
	var onFulfilled, onRejected *Func
	var release sync.Once
	releaseBoth := func() {
		release.Do(func() {
			onFulfilled.Release()
			onRejected.Release()
		})
	}
	onFulfilled, err = FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		settled <- outcome{v: first(args)}
		releaseBoth()
		return nil
	})
	if err != nil {
		return safejs.Undefined(), fmt.Errorf("jsx: await: %w", err)
	}
	onRejected, err = FuncOf(func(_ safejs.Value, args []safejs.Value) any {
		settled <- outcome{err: errorOf(first(args))}
		releaseBoth()
		return nil
	})
	if err != nil {
		onFulfilled.Release()
		return safejs.Undefined(), fmt.Errorf("jsx: await: %w", err)
	}
	if _, err := p.Call("then", onFulfilled.Value(), onRejected.Value()); err != nil {
		releaseBoth()
		return safejs.Undefined(), fmt.Errorf("jsx: await: %w", err)
	}

	// Limitation: a Promise that never settles keeps its two callbacks registered after
	// ctx ends; JavaScript offers no way to unsubscribe from a Promise.
	select {
	case o := <-settled:
		return o.v, o.err
	case <-ctx.Done():
		return safejs.Undefined(), ctx.Err()
	}
}

// first returns args[0], or undefined when there is none.
func first(args []safejs.Value) safejs.Value {
	if len(args) == 0 {
		return safejs.Undefined()
	}
	return args[0]
}
