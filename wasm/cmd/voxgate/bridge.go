//go:build js && wasm

package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/wasm/client"
	"github.com/voxgate/voxgate/wasm/jsx"
	"github.com/voxgate/voxgate/wasm/tracker"
)

// bridge holds the client and every JavaScript function handed out for it.
type bridge struct {
	client  *client.Client
	tabs    *client.Tabs // nil when voxgate.js offers no cross-tab functions
	onEvent safejs.Value
	ctx     context.Context // ends at close(); in-flight calls are aborted with it
	cancel  context.CancelFunc

	mu       sync.Mutex
	funcs    []*jsx.Func
	handles  map[int]*handle // open streams and sockets, by the id JavaScript holds
	lastID   int
	closed   bool
	inflight sync.WaitGroup
	done     chan struct{}
}

// call is a parsed method call, ready to run in its own goroutine.
type call struct {
	run    func(ctx context.Context) (any, error)
	signal safejs.Value // an AbortSignal, or undefined
}

func newBridge(hook safejs.Value) (*bridge, error) {
	opts, err := readOptions(hook)
	if err != nil {
		return nil, err
	}
	onEvent, err := hook.Get("onEvent")
	if err != nil {
		return nil, fmt.Errorf("read onEvent: %w", err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	b := &bridge{onEvent: onEvent, ctx: ctx, cancel: cancel, done: make(chan struct{}),
		handles: map[int]*handle{}}
	opts.OnEvent = b.event
	if lock, _ := hook.Get("lock"); lock.Type() == safejs.TypeFunction {
		b.tabs = client.NewTabs(hook)
		opts.Coordinator = b.tabs
	}
	b.client = client.New(opts)
	return b, nil
}

// readOptions reads hook.options; every field is optional.
func readOptions(hook safejs.Value) (client.Options, error) {
	var opts client.Options
	o, err := hook.Get("options")
	if err != nil || o.Type() != safejs.TypeObject {
		return opts, nil
	}

	if v, _ := o.Get("baseURL"); v.Type() == safejs.TypeString {
		opts.BaseURL, _ = v.String()
	}
	if v, _ := o.Get("marginMs"); v.Type() == safejs.TypeNumber {
		ms, _ := v.Float()
		if ms < 0 {
			return opts, errors.New("options.marginMs must not be negative")
		}
		opts.Margin = time.Duration(ms * float64(time.Millisecond))
	}
	if v, _ := o.Get("proactive"); v.Type() == safejs.TypeBoolean {
		on, _ := v.Bool()
		opts.NoProactive = !on
	}
	if v, _ := o.Get("direct"); v.Type() == safejs.TypeBoolean {
		if on, _ := v.Bool(); !on {
			opts.Direct = client.DirectOff
		}
	} else if v.Type() != safejs.TypeUndefined && v.Type() != safejs.TypeNull {
		return opts, errors.New("options.direct must be true or false")
	}

	return opts, nil
}

// api builds the object voxgate.js wraps. Session and info answers travel as the server's
// JSON text, which voxgate.js parses, so new server fields reach the page unchanged.
func (b *bridge) api() (safejs.Value, error) {
	c := b.client
	methods := map[string]func(this safejs.Value, args []safejs.Value) any{
		"login": b.async(func(args []safejs.Value) (call, error) {
			user, err := stringArg(args, 0, "username")
			if err != nil {
				return call{}, err
			}
			pass, err := stringArg(args, 1, "password")
			if err != nil {
				return call{}, err
			}
			return call{run: func(ctx context.Context) (any, error) {
				s, err := c.Login(ctx, user, pass)
				return string(s.Raw), err
			}}, nil
		}),
		"logout": b.async(func([]safejs.Value) (call, error) {
			return call{run: func(ctx context.Context) (any, error) {
				return nil, c.Logout(ctx)
			}}, nil
		}),
		"session": b.async(func([]safejs.Value) (call, error) {
			return call{run: func(ctx context.Context) (any, error) {
				s, err := c.Session(ctx)
				return string(s.Raw), err
			}}, nil
		}),
		"info": b.async(func([]safejs.Value) (call, error) {
			return call{run: func(ctx context.Context) (any, error) {
				info, err := c.Info(ctx)
				return string(info.Raw), err
			}}, nil
		}),
		"ttsBytes": b.async(func(args []safejs.Value) (call, error) {
			req, err := stringArg(args, 0, "request")
			if err != nil {
				return call{}, err
			}
			return call{signal: arg(args, 1), run: func(ctx context.Context) (any, error) {
				audio, err := c.TTSBytes(ctx, json.RawMessage(req))
				if err != nil {
					return nil, err
				}
				return jsx.Uint8Array(audio)
			}}, nil
		}),
		"refresh": b.async(func(args []safejs.Value) (call, error) {
			grant, err := stringArg(args, 0, "grant")
			if err != nil {
				return call{}, err
			}
			return call{run: func(ctx context.Context) (any, error) {
				st, err := c.Tokens().Refresh(ctx, grant)
				if err != nil {
					return nil, err
				}
				return statesJS(st), nil
			}}, nil
		}),
		"tokenState": func(_ safejs.Value, args []safejs.Value) any {
			grant, _ := stringArg(args, 0, "grant")
			return statesJS(c.Tokens().State(grant))
		},
		"tokenStates": func(safejs.Value, []safejs.Value) any {
			states := c.Tokens().States()
			if len(states) == 1 {
				return "[" + statesJS(states...) + "]"
			}
			return statesJS(states...)
		},

		// check(): voxgate.js calls it on visibilitychange, focus, online and pageshow.
		"check": func(safejs.Value, []safejs.Value) any {
			c.Check()
			return nil
		},
		// adopt(json): a token another tab published, from voxgate.js's BroadcastChannel.
		"adopt": func(_ safejs.Value, args []safejs.Value) any {
			if text, err := stringArg(args, 0, "token"); err == nil && b.tabs != nil {
				b.tabs.Receive(text)
			}
			return nil
		},
		"close": func(safejs.Value, []safejs.Value) any {
			b.close()
			return nil
		},
	}
	for name, fn := range b.streamMethods() {
		methods[name] = fn
	}

	obj, err := safejs.ValueOf(map[string]any{})
	if err != nil {
		return safejs.Undefined(), err
	}
	for name, fn := range methods {
		f, err := jsx.FuncOf(fn)
		if err != nil {
			return safejs.Undefined(), fmt.Errorf("export %s: %w", name, err)
		}
		b.mu.Lock()
		b.funcs = append(b.funcs, f)
		b.mu.Unlock()
		if err := obj.Set(name, f.Value()); err != nil {
			return safejs.Undefined(), fmt.Errorf("export %s: %w", name, err)
		}
	}
	return obj, nil
}

// async makes a method that parses its arguments in the callback and returns a Promise
// settled by a goroutine; the callback itself never waits.
//
// Not inlined: inlining copies the returned closure into every method, some 2.5 KB of
// wasm each.
//
//go:noinline
func (b *bridge) async(parse func(args []safejs.Value) (call, error)) func(safejs.Value,
	[]safejs.Value) any {
	return func(_ safejs.Value, args []safejs.Value) any {
		b.mu.Lock()
		closed := b.closed
		if !closed {
			b.inflight.Add(1)
		}
		b.mu.Unlock()
		if closed {
			return b.reject(&client.Error{Code: client.CodeClosed, Message: "the client is closed"})
		}

		c, err := parse(args)
		if err != nil {
			b.inflight.Done()
			return b.reject(&client.Error{Code: client.CodeInvalidRequest, Message: err.Error()})
		}

		ctx, cancel := context.WithCancel(b.ctx)
		unwatch := watchSignal(c.signal, cancel)
		p, err := jsx.Promise(func() (any, error) {
			defer b.inflight.Done()
			defer cancel()
			defer unwatch()

			v, err := c.run(ctx)
			if err != nil {
				return nil, b.jsError(err)
			}
			return v, nil
		})
		if err != nil {
			cancel()
			unwatch()
			b.inflight.Done()
			return nil
		}
		return p
	}
}

// reject returns an already rejected Promise.
func (b *bridge) reject(err *client.Error) any {
	p, perr := jsx.Promise(func() (any, error) { return nil, jsError{err} })
	if perr != nil {
		return nil
	}
	return p
}

// jsError converts any error into the shape voxgate.js turns into a VoxgateError.
func (b *bridge) jsError(err error) error {
	e := client.AsError(err, "")
	if b.ctx.Err() != nil && e.Code == client.CodeAborted {
		e = &client.Error{Code: client.CodeClosed, Message: "the client was closed during the call",
			Grant: e.Grant, Err: err}
	}
	return jsError{e}
}

// event delivers a client event to the loader's onEvent callback.
func (b *bridge) event(ev client.Event) {
	b.mu.Lock()
	closed := b.closed
	b.mu.Unlock()
	if closed || b.onEvent.Type() != safejs.TypeFunction {
		return
	}

	detail := map[string]any{"grant": nil, "reason": nil, "state": nil, "error": nil}
	if ev.Grant != "" {
		detail["grant"] = ev.Grant
		detail["state"] = statesJS(ev.State)
	}
	if ev.Reason != "" {
		detail["reason"] = ev.Reason
	}
	if ev.Err != nil {
		detail["error"] = jsError{ev.Err}.JSValue()
	}

	_, _ = b.onEvent.Invoke(ev.Type, detail)
}

// close ends the module: later calls reject with "closed", in-flight calls are aborted and
// main is released to clean up.
func (b *bridge) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	b.mu.Unlock()

	b.cancel()
	b.client.Close()
	close(b.done)
}

// shutdown waits for in-flight calls to settle their Promises, then releases every
// function handed to JavaScript (buglog B57).
func (b *bridge) shutdown() {
	b.close()
	b.inflight.Wait()

	b.mu.Lock()
	ids := make([]int, 0, len(b.handles))
	for id := range b.handles {
		ids = append(ids, id)
	}
	b.mu.Unlock()
	for _, id := range ids {
		b.drop(id)
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	for _, f := range b.funcs {
		f.Release()
	}
	b.funcs = nil
}

// watchSignal cancels when the AbortSignal sig fires and returns a function that stops
// watching. A signal that is not an object is ignored.
func watchSignal(sig safejs.Value, cancel context.CancelFunc) (unwatch func()) {
	if sig.Type() != safejs.TypeObject {
		return func() {}
	}
	if aborted, _ := sig.Get("aborted"); aborted.Type() == safejs.TypeBoolean {
		if yes, _ := aborted.Bool(); yes {
			cancel()
			return func() {}
		}
	}

	onAbort, err := jsx.FuncOf(func(safejs.Value, []safejs.Value) any {
		cancel() // never blocks
		return nil
	})
	if err != nil {
		return func() {}
	}
	if _, err := sig.Call("addEventListener", "abort", onAbort.Value()); err != nil {
		onAbort.Release()
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			_, _ = sig.Call("removeEventListener", "abort", onAbort.Value())
			onAbort.Release()
		})
	}
}

// jsError is a client error as JavaScript sees it: a plain object that voxgate.js turns
// into a VoxgateError.
type jsError struct {
	err *client.Error
}

func (e jsError) Error() string { return e.err.Error() }

func (e jsError) Unwrap() error { return e.err }

// JSValue returns {code, status, message, grant, upstream}.
func (e jsError) JSValue() any {
	v := map[string]any{
		"code":     e.err.Code,
		"status":   e.err.Status,
		"message":  e.err.Message,
		"grant":    nil,
		"upstream": nil,
	}
	if e.err.Grant != "" {
		v["grant"] = e.err.Grant
	}
	if u := e.err.Upstream; u != nil {
		v["upstream"] = map[string]any{"status": u.Status, "error_code": u.ErrorCode,
			"title": u.Title, "message": u.Message, "request_id": u.RequestID}
	}
	if e.err.RetryAfter > 0 {
		v["retryAfterMs"] = e.err.RetryAfter.Milliseconds()
	}
	return v
}

// tokenState is a tracker.State as the TokenState object of voxgate.d.ts. States travel as
// JSON text that voxgate.js parses: encoding a struct is much smaller in wasm than setting
// each field of a JavaScript object.
type tokenState struct {
	Grant           string      `json:"grant"`
	Valid           bool        `json:"valid"`
	ExpiresAt       *int64      `json:"expiresAt"`
	ServerExpiresAt *int64      `json:"serverExpiresAt"`
	RemainingMs     int64       `json:"remainingMs"`
	LifetimeMs      int64       `json:"lifetimeMs"`
	MarginMs        int64       `json:"marginMs"`
	Refreshes       int         `json:"refreshes"`
	Refreshing      bool        `json:"refreshing"`
	LastRefreshAt   *int64      `json:"lastRefreshAt"`
	ClockOffsetMs   int64       `json:"clockOffsetMs"`
	Adopted         int         `json:"adopted"`
	BackoffMs       int64       `json:"backoffMs"`
	Direct          bool        `json:"direct"`
	LastError       *stateError `json:"lastError"`
}

type stateError struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// statesJS encodes one state (one argument) or a list of them as JSON text.
func statesJS(states ...tracker.State) string {
	out := make([]tokenState, len(states))
	for i, s := range states {
		out[i] = tokenState{Grant: s.Grant, Valid: s.Valid, ExpiresAt: millis(s.ExpiresAt),
			ServerExpiresAt: millis(s.ServerExpiresAt), RemainingMs: s.Remaining.Milliseconds(),
			LifetimeMs: s.Lifetime.Milliseconds(), MarginMs: s.Margin.Milliseconds(),
			Refreshes: s.Refreshes, Refreshing: s.Refreshing, LastRefreshAt: millis(s.LastRefreshAt),
			ClockOffsetMs: s.ClockOffset.Milliseconds(), Adopted: s.Adopted,
			BackoffMs: s.Backoff.Milliseconds(), Direct: s.Direct}
		if e := s.LastError; e != nil {
			out[i].LastError = &stateError{Code: e.Code, Message: e.Message}
		}
	}
	var v any = out
	if len(out) == 1 {
		v = out[0]
	}
	text, _ := json.Marshal(v) // plain fields: cannot fail
	return string(text)
}

// millis is t in Unix milliseconds, or nil (null) for the zero time.
func millis(t time.Time) *int64 {
	if t.IsZero() {
		return nil
	}
	ms := t.UnixMilli()
	return &ms
}

// arg returns args[i], or undefined.
func arg(args []safejs.Value, i int) safejs.Value {
	if i < len(args) {
		return args[i]
	}
	return safejs.Undefined()
}

// stringArg returns args[i] as a string, or an error naming the parameter.
func stringArg(args []safejs.Value, i int, name string) (string, error) {
	v := arg(args, i)
	if v.Type() != safejs.TypeString {
		return "", fmt.Errorf("%s must be a string", name)
	}
	return v.String()
}
