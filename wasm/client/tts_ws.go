//go:build js && wasm

package client

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"strconv"
	"sync"

	"github.com/voxgate/voxgate/wasm/cartesia"
)

// contextQueue is how many events wait per TTS context before the socket's reader stops
// reading (which holds back every context on the socket: one unread context stalls the
// others, by design of a single ordered connection).
const contextQueue = 64

// TTSSocket is one /cartesia/tts/websocket connection carrying any number of contexts.
type TTSSocket struct {
	s *socket

	mu       sync.Mutex
	contexts map[string]*TTSContext
}

// TTSWebSocket opens a TTS WebSocket (after checking the tts token).
func (c *Client) TTSWebSocket(ctx context.Context) (*TTSSocket, error) {
	s, err := c.dial(ctx, GrantTTS, "/cartesia/tts/websocket", "", nil)
	if err != nil {
		return nil, err
	}
	t := &TTSSocket{s: s, contexts: map[string]*TTSContext{}}
	go t.demux()
	return t, nil
}

// Context starts a context with the base request (model_id, voice, output_format and the
// other fields every input repeats) as JSON. An empty id gets a random one; an id already
// open on this socket is refused.
func (t *TTSSocket) Context(base []byte, id string) (*TTSContext, error) {
	if id == "" {
		id = "ctx-" + strconv.FormatUint(rand.Uint64(), 36)
	}
	msgs, err := cartesia.NewTTSContext(id, base)
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Grant: GrantTTS, Message: err.Error()}
	}

	t.mu.Lock()
	defer t.mu.Unlock()
	if _, open := t.contexts[id]; open {
		return nil, &Error{Code: CodeInvalidRequest, Grant: GrantTTS,
			Message: "context " + id + " is already open on this socket"}
	}
	select {
	case <-t.s.ended:
		return nil, &Error{Code: CodeClosed, Grant: GrantTTS, Message: "the WebSocket is closed"}
	default:
	}
	k := &TTSContext{t: t, msgs: msgs, events: make(chan cartesia.TTSEvent, contextQueue),
		gone: make(chan struct{})}
	t.contexts[id] = k
	return k, nil
}

// demux hands each event to its context until the socket ends, then ends every context
// still open.
func (t *TTSSocket) demux() {
	for {
		m, err := t.s.next(context.Background())
		if err != nil {
			if errors.Is(err, io.EOF) {
				err = &Error{Code: CodeWSClosed, Grant: GrantTTS,
					Message: "the WebSocket closed before the context was done"}
				if t.s.closing.Load() {
					err = io.EOF // this client closed it
				}
			}
			t.endAll(err)
			return
		}
		if m.binary {
			continue // the TTS protocol is JSON text only
		}

		ev, derr := cartesia.DecodeTTSEvent(m.data)
		if derr != nil {
			t.endAll(badEvent(derr, GrantTTS))
			t.s.release()
			t.s.Close(closeNormal, "undecodable event")
			return
		}
		t.route(ev)
	}
}

// route delivers ev to its context. An error without a context ends every context.
func (t *TTSSocket) route(ev cartesia.TTSEvent) {
	if ev.ContextID == "" && ev.Err != nil {
		t.endAll(streamError(ev.Err, GrantTTS))
		return
	}
	t.mu.Lock()
	k := t.contexts[ev.ContextID]
	t.mu.Unlock()
	if k == nil {
		return // a context this client ended or cancelled; nobody waits for it
	}

	switch {
	case ev.Err != nil:
		k.end(streamError(ev.Err, GrantTTS))
	case ev.Type == cartesia.TTSDone:
		k.deliver(ev)
		k.end(io.EOF)
	default:
		k.deliver(ev)
	}
}

func (t *TTSSocket) endAll(err error) {
	t.mu.Lock()
	open := make([]*TTSContext, 0, len(t.contexts))
	for _, k := range t.contexts {
		open = append(open, k)
	}
	t.mu.Unlock()
	for _, k := range open {
		k.end(err)
	}
}

// Close closes the socket with 1000; contexts still open end without error.
func (t *TTSSocket) Close() {
	t.s.Close(closeNormal, "")
}

// Closed waits until the socket has ended and returns how.
func (t *TTSSocket) Closed(ctx context.Context) (CloseStatus, error) {
	return t.s.Closed(ctx)
}

// TTSContext is one context on a TTSSocket: push text, read its events.
type TTSContext struct {
	t    *TTSSocket
	msgs *cartesia.TTSContext

	events  chan cartesia.TTSEvent // closed by end
	gone    chan struct{}          // closed when nobody reads events any more
	endOnce sync.Once
	endErr  error // set before events is closed
	drop    sync.Once
}

// ID returns the context id.
func (k *TTSContext) ID() string { return k.msgs.ID() }

// Push sends text and keeps the context open; flush asks for a flush_done event once the
// text so far is spoken.
func (k *TTSContext) Push(text string, flush bool) error {
	return k.t.s.send(false, k.msgs.Push(text, flush))
}

// End sends the last text (may be empty) and ends the input; events continue until done.
func (k *TTSContext) End(text string) error {
	return k.t.s.send(false, k.msgs.End(text))
}

// Cancel sends a cancel for the context and ends its events at once: Cartesia still
// finishes a generation already under way, but this client drops what follows.
func (k *TTSContext) Cancel() error {
	err := k.t.s.send(false, k.msgs.Cancel())
	k.Release()
	return err
}

// Next returns the context's next event: chunk, timestamps, flush_done, done (the last),
// or a type Cartesia adds. An error event ends the context with an *Error of code
// upstream_error; after done Next returns io.EOF.
func (k *TTSContext) Next(ctx context.Context) (cartesia.TTSEvent, error) {
	select {
	case ev, ok := <-k.events:
		if ok {
			return ev, nil
		}
		return cartesia.TTSEvent{}, k.endErr
	case <-k.gone:
		return cartesia.TTSEvent{}, io.EOF
	case <-ctx.Done():
		return cartesia.TTSEvent{}, AsError(ctx.Err(), GrantTTS)
	}
}

// Release stops reading the context: events still queued and any that arrive are dropped.
func (k *TTSContext) Release() {
	k.drop.Do(func() { close(k.gone) })
	k.t.forget(k)
}

// deliver queues ev, waiting (and so holding the socket's reader) while the queue is full
// and the context is still read. Only the demux goroutine delivers.
func (k *TTSContext) deliver(ev cartesia.TTSEvent) {
	select {
	case k.events <- ev:
	case <-k.gone:
	}
}

// end finishes the context with err (io.EOF: normally). Only the demux goroutine ends
// contexts, so no delivery can race with closing events.
func (k *TTSContext) end(err error) {
	k.endOnce.Do(func() {
		k.endErr = err
		close(k.events)
		k.t.forget(k)
	})
}

// forget removes k from the socket's open contexts.
func (t *TTSSocket) forget(k *TTSContext) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.contexts[k.ID()] == k {
		delete(t.contexts, k.ID())
	}
}
