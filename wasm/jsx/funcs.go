//go:build js && wasm

package jsx

import (
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/hack-pad/safejs"
)

// live counts the functions made by FuncOf and not yet released.
var live atomic.Int64

// Func is a Go function callable from JavaScript, made by FuncOf. It counts itself as
// live until released, so tests can prove that every stream releases what it made.
type Func struct {
	f    safejs.Func
	once sync.Once
}

// FuncOf wraps fn for JavaScript; see safejs.FuncOf. The callback runs while the event
// loop is paused: it must not wait for anything JavaScript delivers.
func FuncOf(fn func(this safejs.Value, args []safejs.Value) any) (*Func, error) {
	f, err := safejs.FuncOf(fn)
	if err != nil {
		return nil, fmt.Errorf("jsx: func: %w", err)
	}
	live.Add(1)
	return &Func{f: f}, nil
}

// Value returns the function as a JavaScript value.
func (f *Func) Value() safejs.Value { return f.f.Value() }

// Release frees the function; JavaScript must not call it afterwards. Safe to call more
// than once.
func (f *Func) Release() {
	f.once.Do(func() {
		f.f.Release()
		live.Add(-1)
	})
}

// LiveFuncs returns how many functions made by FuncOf are not yet released.
func LiveFuncs() int64 { return live.Load() }
