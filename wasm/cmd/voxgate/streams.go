//go:build js && wasm

package main

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"sync"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/wasm/cartesia"
	"github.com/voxgate/voxgate/wasm/client"
	"github.com/voxgate/voxgate/wasm/jsx"
)

// handle is one open stream or socket as JavaScript holds it: a number. Streams are
// addressed by id through a few shared API functions rather than objects of their own, so
// a stream creates no JavaScript function that would need releasing; only an AbortSignal
// listener does, and it is removed when the stream ends.
type handle struct {
	obj     any // *client.TTSStream, *client.TTSSocket, *client.TTSContext, ...
	next    func() (any, error)
	release func() // stops reading; called once when the handle is dropped
	cancel  context.CancelFunc
	unwatch func()
	parent  int // the socket a TTS context belongs to: dropped with it

	mu   sync.Mutex // serializes next
	once sync.Once
}

// add registers a handle and returns its id.
func (b *bridge) add(h *handle) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lastID++
	b.handles[b.lastID] = h
	return b.lastID
}

func (b *bridge) get(id int) *handle {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.handles[id]
}

// drop forgets a handle, stops reading it and removes its abort listener.
func (b *bridge) drop(id int) {
	b.mu.Lock()
	h := b.handles[id]
	delete(b.handles, id)
	var children []int
	for cid, c := range b.handles {
		if c.parent == id {
			children = append(children, cid)
		}
	}
	b.mu.Unlock()
	for _, cid := range children {
		b.drop(cid)
	}
	if h == nil {
		return
	}
	h.once.Do(func() {
		if h.release != nil {
			h.release()
		}
		if h.unwatch != nil {
			h.unwatch()
		}
		if h.cancel != nil {
			h.cancel()
		}
	})
}

// streamContext is the context of a stream that outlives its opening call: it ends with the
// module or when signal aborts.
func (b *bridge) streamContext(signal safejs.Value) (context.Context, context.CancelFunc,
	func()) {
	ctx, cancel := context.WithCancel(b.ctx)
	return ctx, cancel, watchSignal(signal, cancel)
}

// closeOnDone closes a socket when ctx ends (module closed, or the AbortSignal fired).
func closeOnDone(ctx context.Context, closed func(context.Context) (client.CloseStatus,
	error), closeFn func()) {
	go func() {
		if _, err := closed(ctx); err != nil {
			closeFn()
		}
	}()
}

// streamMethods are the API functions for streams and sockets.
func (b *bridge) streamMethods() map[string]func(safejs.Value, []safejs.Value) any {
	c := b.client
	return map[string]func(safejs.Value, []safejs.Value) any{
		// ttsSSE(requestJSON, signal) -> id; the request goes out on the first next().
		"ttsSSE": b.sync(func(args []safejs.Value) (any, error) {
			req, err := stringArg(args, 0, "request")
			if err != nil {
				return nil, err
			}
			ctx, cancel, unwatch := b.streamContext(arg(args, 1))
			s, err := c.TTSSSE(ctx, json.RawMessage(req))
			if err != nil {
				cancel()
				unwatch()
				return nil, err
			}
			return b.add(&handle{obj: s, cancel: cancel, unwatch: unwatch, release: s.Close,
				next: func() (any, error) {
					ev, err := s.Next()
					if err != nil {
						return nil, err
					}
					return ttsEventJS(ev)
				}}), nil
		}),

		// ttsSocket(signal) -> Promise<id>
		"ttsSocket": b.async(func(args []safejs.Value) (call, error) {
			return call{run: func(context.Context) (any, error) {
				ctx, cancel, unwatch := b.streamContext(arg(args, 0))
				t, err := c.TTSWebSocket(ctx)
				if err != nil {
					cancel()
					unwatch()
					return nil, err
				}
				closeOnDone(ctx, t.Closed, t.Close)
				return b.add(&handle{obj: t, cancel: cancel, unwatch: unwatch}), nil
			}}, nil
		}),

		// ttsContext(socketID, baseJSON, contextID) -> {id, contextId}
		"ttsContext": b.sync(func(args []safejs.Value) (any, error) {
			sockID, _ := intArg(args, 0)
			t, err := handleArg[*client.TTSSocket](b, args, 0)
			if err != nil {
				return nil, err
			}
			base, err := stringArg(args, 1, "request")
			if err != nil {
				return nil, err
			}
			id, _ := optionalString(args, 2)
			k, err := t.Context([]byte(base), id)
			if err != nil {
				return nil, err
			}
			h := b.add(&handle{obj: k, parent: sockID, release: k.Release,
				next: func() (any, error) {
					ev, err := k.Next(context.Background())
					if err != nil {
						return nil, err
					}
					return ttsEventJS(ev)
				}})
			return map[string]any{"id": h, "contextId": k.ID()}, nil
		}),

		// sttSocket(optionsJSON, turns, signal) -> Promise<id>
		"sttSocket": b.async(func(args []safejs.Value) (call, error) {
			raw, err := stringArg(args, 0, "options")
			if err != nil {
				return call{}, err
			}
			turns, _ := arg(args, 1).Bool()
			return call{run: func(context.Context) (any, error) {
				ctx, cancel, unwatch := b.streamContext(arg(args, 2))
				t, err := openSTT(ctx, c, raw, turns)
				if err != nil {
					cancel()
					unwatch()
					return nil, err
				}
				closeOnDone(ctx, t.Closed, t.Abort)
				return b.add(&handle{obj: t, cancel: cancel, unwatch: unwatch,
					release: t.Release, next: func() (any, error) {
						ev, err := t.Next(context.Background())
						if err != nil {
							return nil, err
						}
						return sttEventJS(ev)
					}}), nil
			}}, nil
		}),
		"sttClose": b.async(func(args []safejs.Value) (call, error) {
			t, err := handleArg[*client.STTSocket](b, args, 0)
			if err != nil {
				return call{}, err
			}
			return call{run: func(ctx context.Context) (any, error) {
				return nil, t.Close(ctx)
			}}, nil
		}),

		// transcribe(file, optionsJSON, openai, signal) -> Promise<JSON text>
		"transcribe": b.async(func(args []safejs.Value) (call, error) {
			audio, err := audioArg(arg(args, 0))
			if err != nil {
				return call{}, err
			}
			raw, err := stringArg(args, 1, "options")
			if err != nil {
				return call{}, err
			}
			var opts cartesia.BatchOptions
			if err := json.Unmarshal([]byte(raw), &opts); err != nil {
				return call{}, errors.New("options: " + err.Error())
			}
			openai, _ := arg(args, 2).Bool()
			return call{signal: arg(args, 3), run: func(ctx context.Context) (any, error) {
				var t client.Transcription
				if openai {
					t, err = c.TranscribeOpenAI(ctx, audio, opts)
				} else {
					t, err = c.Transcribe(ctx, audio, opts)
				}
				return string(t.Raw), err
			}}, nil
		}),

		// agentCall(agentID, optionsJSON, signal) -> Promise<{id, streamId}>
		"agentCall": b.async(func(args []safejs.Value) (call, error) {
			agentID, err := stringArg(args, 0, "agentId")
			if err != nil {
				return call{}, err
			}
			raw, err := stringArg(args, 1, "options")
			if err != nil {
				return call{}, err
			}
			var opts cartesia.AgentStartOptions
			if err := json.Unmarshal([]byte(raw), &opts); err != nil {
				return call{}, errors.New("options: " + err.Error())
			}
			return call{run: func(context.Context) (any, error) {
				ctx, cancel, unwatch := b.streamContext(arg(args, 2))
				a, err := c.CallAgent(ctx, agentID, opts)
				if err != nil {
					cancel()
					unwatch()
					return nil, err
				}
				closeOnDone(ctx, a.Closed, a.Hangup)
				id := b.add(&handle{obj: a, cancel: cancel, unwatch: unwatch,
					release: a.Release, next: func() (any, error) {
						ev, err := a.Next(context.Background())
						if err != nil {
							return nil, err
						}
						return agentEventJS(ev)
					}})
				return map[string]any{"id": id, "streamId": a.StreamID()}, nil
			}}, nil
		}),
		// send(id, op, value, flag): everything a page sends on an open stream, in one
		// method (one function each would cost the bundle a closure each).
		"send": b.sync(func(args []safejs.Value) (any, error) {
			id, err := intArg(args, 0)
			if err != nil {
				return nil, err
			}
			op, _ := optionalString(args, 1)
			return nil, b.send(b.getObj(id), op, arg(args, 2), arg(args, 3))
		}),

		// next(id) -> Promise<event | null>; null: the stream ended normally.
		"next": b.async(func(args []safejs.Value) (call, error) {
			id, err := intArg(args, 0)
			if err != nil {
				return call{}, err
			}
			h := b.get(id)
			return call{run: func(context.Context) (any, error) {
				if h == nil || h.next == nil {
					return nil, nil // dropped or never iterable: the end
				}
				h.mu.Lock()
				v, err := h.next()
				h.mu.Unlock()
				if err != nil {
					b.drop(id)
					if errors.Is(err, io.EOF) {
						return nil, nil
					}
					return nil, err
				}
				return v, nil
			}}, nil
		}),

		// release(id): JavaScript stopped reading (an iterator's return()).
		"release": b.sync(func(args []safejs.Value) (any, error) {
			id, err := intArg(args, 0)
			if err != nil {
				return nil, err
			}
			b.drop(id)
			return nil, nil
		}),

		// closeSocket(id): TTS socket close, agent hangup, STT abort.
		"closeSocket": b.sync(func(args []safejs.Value) (any, error) {
			id, err := intArg(args, 0)
			if err != nil {
				return nil, err
			}
			switch s := b.getObj(id).(type) {
			case *client.TTSSocket:
				s.Close()
				b.dropWhenClosed(id, s.Closed)
			case *client.AgentCall:
				s.Hangup()
			case *client.STTSocket:
				s.Abort()
			}
			return nil, nil
		}),

		// closed(id) -> Promise<{code, reason}>
		"closed": b.async(func(args []safejs.Value) (call, error) {
			id, err := intArg(args, 0)
			if err != nil {
				return call{}, err
			}
			var closed func(context.Context) (client.CloseStatus, error)
			switch s := b.getObj(id).(type) {
			case *client.TTSSocket:
				closed = s.Closed
				b.dropWhenClosed(id, s.Closed) // nothing to iterate on the socket itself
			case *client.AgentCall:
				closed = s.Closed
			case *client.STTSocket:
				closed = s.Closed
			default:
				return call{}, errors.New("not an open socket")
			}
			return call{run: func(context.Context) (any, error) {
				// Waits with the module's context only: a closed socket always ends.
				st, err := closed(b.ctx)
				if err != nil {
					return nil, err
				}
				return map[string]any{"code": st.Code, "reason": st.Reason}, nil
			}}, nil
		}),

		// stats() -> {handles, funcs}: open handles and live Go functions (tests).
		"stats": func(safejs.Value, []safejs.Value) any {
			b.mu.Lock()
			n := len(b.handles)
			b.mu.Unlock()
			return map[string]any{"handles": n, "funcs": jsx.LiveFuncs()}
		},
	}
}

// send performs op on an open stream.
func (b *bridge) send(obj any, op string, v, flag safejs.Value) error {
	text := func() (string, error) {
		if v.Type() != safejs.TypeString {
			return "", errors.New(op + ": expected a string")
		}
		return v.String()
	}
	audio := func() ([]byte, error) {
		b, err := jsx.Bytes(v)
		if err != nil {
			return nil, errors.New(op + ": audio must be a Uint8Array or an ArrayBuffer")
		}
		return b, nil
	}

	switch s := obj.(type) {
	case *client.TTSContext:
		switch op {
		case "push", "end":
			t, err := text()
			if err != nil {
				return err
			}
			if op == "end" {
				return s.End(t)
			}
			flush, _ := flag.Bool()
			return s.Push(t, flush)
		case "cancel":
			return s.Cancel()
		}
	case *client.STTSocket:
		switch op {
		case "audio":
			a, err := audio()
			if err != nil {
				return err
			}
			return s.Send(a)
		case "finalize":
			return s.Finalize()
		case "configure":
			t, err := text()
			if err != nil {
				return err
			}
			return s.Configure([]byte(t))
		}
	case *client.AgentCall:
		switch op {
		case "audio":
			a, err := audio()
			if err != nil {
				return err
			}
			return s.SendAudio(a)
		case "dtmf":
			t, err := text()
			if err != nil {
				return err
			}
			return s.DTMF(t)
		case "custom":
			t, err := text()
			if err != nil {
				return err
			}
			return s.Custom([]byte(t))
		}
	case nil:
		return &client.Error{Code: client.CodeClosed, Message: "the stream is closed"}
	}
	return errors.New(op + ": not an operation of this stream")
}

// dropWhenClosed forgets a handle once its socket has ended.
func (b *bridge) dropWhenClosed(id int, closed func(context.Context) (client.CloseStatus,
	error)) {
	go func() {
		_, _ = closed(b.ctx)
		b.drop(id)
	}()
}

func (b *bridge) getObj(id int) any {
	if h := b.get(id); h != nil {
		return h.obj
	}
	return nil
}

// sync makes a method that runs fn in the callback (fn must not wait for JavaScript) and
// returns {value} or {error}, which voxgate.js unwraps; it throws nothing. Not inlined,
// like async.
//
//go:noinline
func (b *bridge) sync(fn func(args []safejs.Value) (any, error)) func(safejs.Value,
	[]safejs.Value) any {
	return func(_ safejs.Value, args []safejs.Value) any {
		b.mu.Lock()
		closed := b.closed
		b.mu.Unlock()
		if closed {
			return map[string]any{"error": jsError{&client.Error{Code: client.CodeClosed,
				Message: "the client is closed"}}.JSValue()}
		}
		v, err := fn(args)
		if err != nil {
			e := client.AsError(err, "")
			if e.Code == client.CodeNetworkError && !errors.As(err, new(*client.Error)) {
				e = &client.Error{Code: client.CodeInvalidRequest, Message: err.Error()}
			}
			return map[string]any{"error": jsError{e}.JSValue()}
		}
		return map[string]any{"value": v}
	}
}

// handleArg returns the object of the handle whose id is args[i], of type T. Not inlined:
// it is called from every stream method.
//
//go:noinline
func handleArg[T any](b *bridge, args []safejs.Value, i int) (T, error) {
	var zero T
	id, err := intArg(args, i)
	if err != nil {
		return zero, err
	}
	obj, ok := b.getObj(id).(T)
	if !ok {
		return zero, &client.Error{Code: client.CodeClosed, Message: "the stream is closed"}
	}
	return obj, nil
}

func intArg(args []safejs.Value, i int) (int, error) {
	v := arg(args, i)
	if v.Type() != safejs.TypeNumber {
		return 0, errors.New("id must be a number")
	}
	return v.Int()
}

// optionalString returns args[i] as a string, "" when undefined or null.
func optionalString(args []safejs.Value, i int) (string, error) {
	v := arg(args, i)
	if v.IsUndefined() || v.IsNull() {
		return "", nil
	}
	if v.Type() != safejs.TypeString {
		return "", errors.New("expected a string")
	}
	return v.String()
}

// audioArg reads a Blob, Uint8Array or ArrayBuffer for a batch transcription. Typed
// arrays become a Blob in JavaScript, so the bytes are never copied through Go.
func audioArg(v safejs.Value) (client.Audio, error) {
	if v.Type() != safejs.TypeObject {
		return client.Audio{}, errors.New("file must be a Blob, File, Uint8Array or ArrayBuffer")
	}
	if jsx.IsBlob(v) {
		name := ""
		if n, err := v.Get("name"); err == nil && n.Type() == safejs.TypeString {
			name, _ = n.String()
		}
		return client.Audio{Blob: v, Name: name}, nil
	}
	blob, err := jsx.BlobOf(v, "")
	if err != nil {
		return client.Audio{}, err
	}
	return client.Audio{Blob: blob}, nil
}

func openSTT(ctx context.Context, c *client.Client, raw string, turns bool) (*client.STTSocket,
	error) {
	if turns {
		var opts cartesia.TurnOptions
		if err := json.Unmarshal([]byte(raw), &opts); err != nil {
			return nil, &client.Error{Code: client.CodeInvalidRequest, Grant: client.GrantSTT,
				Message: "options: " + err.Error()}
		}
		return c.STTTurns(ctx, opts)
	}
	var opts cartesia.STTOptions
	if err := json.Unmarshal([]byte(raw), &opts); err != nil {
		return nil, &client.Error{Code: client.CodeInvalidRequest, Grant: client.GrantSTT,
			Message: "options: " + err.Error()}
	}
	return c.STTWebSocket(ctx, opts)
}
