package emulator

// WSS /tts/websocket (reference §4.3): one connection carries many generation contexts,
// each a queue of inputs spoken in order, interleaved with the other contexts' output.
//
// The emulator's choices where Cartesia's docs are silent or loose:
//
//   - Each input with a non-empty transcript is spoken as soon as it is dequeued, as its own
//     tone-code frame; decoding a context's audio with tonecode.DecodeAll and joining the
//     frames' texts gives the concatenated transcripts. Word timestamps count from the
//     context's first audio.
//   - An input that continues a context may leave out the fields it must repeat (model_id,
//     voice, output_format, ...): they are taken from the context's first input. Fields it
//     does send must equal the first input's, else the context fails with an error event.
//   - cancel drops the context's inputs that have not started; the one being spoken
//     finishes, then done ends the context. Cancelling an unknown context does nothing.
//   - An error about a context (an invalid input, the fault voice) is its last event:
//     done:true, nothing follows for that context. Errors never close the connection.
//   - A context expires contextExpiry after its last output while it has nothing queued
//     (on the emulator clock); an input with its id afterwards starts a fresh context, with
//     flush ids and timestamps from the start again.
//
// Limitation: max_buffer_delay_ms is validated and ignored: the emulator never waits for
// more text before speaking, so continued inputs are spoken one frame each.

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
)

// contextExpiry is how long an idle context lives after its last output (reference §4.3:
// one second).
const contextExpiry = time.Second

// maxContexts bounds the live contexts of one connection; Cartesia counts each active
// context against the plan's concurrency, so a client never needs thousands at once.
const maxContexts = 100

// idleReason is the close reason of an idle WebSocket, on every streaming route.
const idleReason = "connection idle timeout"

// inherited are the fields a continuing input may omit; they come from the context's
// first input.
var inherited = []string{"model_id", "voice", "output_format", "language", "locale",
	"generation_config", "add_timestamps", "add_phoneme_timestamps",
	"use_normalized_timestamps", "pronunciation_dict_id", "normalization", "speed",
	"max_buffer_delay_ms"}

// acceptWebSocket upgrades the call after its checks passed. Requests that are not a
// WebSocket handshake get a 426 in Cartesia's error shape.
//
// Any Origin is accepted: the emulator authenticates by API key or access token, never by
// cookie, so a cross-site page gains nothing it does not already hold (and Cartesia serves
// browsers on every origin the same way).
func (c *call) acceptWebSocket(readLimit int64) (*websocket.Conn, bool) {
	if !isWebSocketUpgrade(c.r) {
		c.w.Header().Set("Upgrade", "websocket")
		c.fail(http.StatusUpgradeRequired, codeInvalidRequest, "Upgrade required",
			c.r.URL.Path+" is a WebSocket; open it with a WebSocket handshake")
		return nil, false
	}
	conn, err := websocket.Accept(c.w, c.r, &websocket.AcceptOptions{
		InsecureSkipVerify: true,
		CompressionMode:    websocket.CompressionDisabled,
	})
	if err != nil {
		// Accept has answered the handshake error itself.
		c.errorCode = codeInvalidRequest
		return nil, false
	}
	conn.SetReadLimit(readLimit)
	return conn, true
}

// idleTimer closes a WebSocket with 1000 idleReason when nothing happened for d.
type idleTimer struct {
	d time.Duration
	t *time.Timer
}

func newIdleTimer(conn *websocket.Conn, d time.Duration) *idleTimer {
	return &idleTimer{d: d, t: time.AfterFunc(d, func() {
		_ = conn.Close(websocket.StatusNormalClosure, idleReason)
	})}
}

// touch restarts the countdown.
func (it *idleTimer) touch() { it.t.Reset(it.d) }

func (it *idleTimer) stop() { it.t.Stop() }

// closeStatus describes how a WebSocket ended, for logs.
func closeStatus(err error) slog.Attr {
	if code := websocket.CloseStatus(err); code != -1 {
		return slog.Int("close_code", int(code))
	}
	return slog.String("close", "connection lost")
}

// ttsSocket is one /tts/websocket connection.
type ttsSocket struct {
	e    *Emulator
	c    *call
	conn *websocket.Conn
	ctx  context.Context // ends when the connection does
	idle *idleTimer

	mu       sync.Mutex
	contexts map[string]*ttsContext
	workers  sync.WaitGroup

	inputs, errorEvents atomic.Int64 // for the log
}

// ttsContext is one context_id's state; its fields are guarded by ttsSocket.mu.
type ttsContext struct {
	id    string
	first object      // the first input, for inherited fields
	base  *ttsRequest // the first input's fields, which later inputs must repeat
	opts  streamOptions
	queue []ttsInput
	ended bool // continue:false or cancel was received

	speaking   bool      // audio of an input is being sent
	lastOutput time.Time // emulator clock: when audio was last sent (or the context opened)

	ctx     context.Context    // generation stops when it ends
	stop    context.CancelFunc // ends ctx: the context failed
	running chan struct{}      // non-nil while a worker speaks the queue; closed when it stops

	flushID int     // the current flush id, from 1
	offset  float64 // seconds of audio sent on this context
}

// ttsInput is one queued input of a context.
type ttsInput struct {
	t     *ttsRequest
	flush bool
	last  bool // continue:false (or a cancel): done follows
}

// ttsWebSocket serves WSS /tts/websocket until either side closes or the connection has
// been idle for Config.TTSIdle.
func (e *Emulator) ttsWebSocket(c *call) {
	conn, ok := c.acceptWebSocket(maxTTSBody)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	s := &ttsSocket{e: e, c: c, conn: conn, ctx: ctx, idle: newIdleTimer(conn, e.ttsIdle),
		contexts: map[string]*ttsContext{}}

	err := s.readLoop()

	// Stop the workers before the handler returns, so none outlives its connection.
	s.idle.stop()
	cancel()
	_ = conn.CloseNow()
	s.workers.Wait()
	c.logAttrs = append(c.logAttrs, closeStatus(err), slog.Int64("inputs", s.inputs.Load()),
		slog.Int64("error_events", s.errorEvents.Load()))
}

// readLoop handles client messages until the connection fails or closes.
func (s *ttsSocket) readLoop() error {
	for {
		typ, data, err := s.conn.Read(s.ctx)
		if err != nil {
			return err
		}
		s.idle.touch()
		s.inputs.Add(1)

		if typ != websocket.MessageText {
			s.fail(badRequest("binary messages are not accepted; send JSON text messages"), "")
			continue
		}
		s.handle(data)
	}
}

// handle acts on one client message.
func (s *ttsSocket) handle(data []byte) {
	req, perr := parseObject(data)
	if perr != nil {
		s.fail(perr, "")
		return
	}
	id, present, perr := req.str("context_id")
	switch {
	case perr != nil:
		s.fail(perr, "")
		return
	case !present || id == "":
		id = newUUID() // optional in older versions: the events carry the id chosen here
	case len(id) > 256:
		s.fail(badRequest("context_id is longer than 256 bytes"), "")
		return
	}
	cancel, _, perr := req.boolean("cancel")
	if perr != nil {
		s.fail(perr, id)
		return
	}

	if perr := s.enqueue(req, id, cancel); perr != nil {
		s.fail(perr, id)
	}
}

// enqueue adds the input (or the cancel) to its context, opening the context if it is
// new. An invalid input fails its context: the error it returns is the context's last
// event, so enqueue first waits until the context's worker has stopped speaking.
func (s *ttsSocket) enqueue(req object, id string, cancel bool) *apiError {
	s.mu.Lock()
	tc := s.live(id)
	if cancel {
		s.cancelLocked(tc)
		s.mu.Unlock()
		return nil
	}
	in, perr := s.parseInput(req, tc)
	if perr != nil {
		var running chan struct{}
		if tc != nil {
			running = tc.running
			s.dropLocked(tc)
			tc.stop()
		}
		s.mu.Unlock()
		if running != nil {
			<-running
		}
		return perr
	}
	defer s.mu.Unlock()

	if tc == nil {
		if len(s.contexts) >= maxContexts {
			return &apiError{http.StatusTooManyRequests, "concurrency_limited",
				"Too many concurrent contexts", "this connection already has the maximum " +
					"of 100 open contexts; end some with continue:false first"}
		}
		tc = &ttsContext{id: id, first: req, base: in.t, flushID: 1, lastOutput: s.e.now()}
		tc.opts, _ = parseStreamOptions(req, in.t) // validated by parseInput
		tc.ctx, tc.stop = context.WithCancel(s.ctx)
		s.contexts[id] = tc
	}
	tc.queue = append(tc.queue, in)
	tc.ended = in.last
	s.startLocked(tc)
	return nil
}

// startLocked starts tc's worker unless one is running.
func (s *ttsSocket) startLocked(tc *ttsContext) {
	if tc.running != nil {
		return
	}
	tc.running = make(chan struct{})
	s.workers.Add(1)
	go s.work(tc, tc.running)
}

// live returns the context with id unless it is unknown or has expired; expired contexts
// are dropped on the way.
func (s *ttsSocket) live(id string) *ttsContext {
	now := s.e.now()
	for cid, tc := range s.contexts {
		if !tc.speaking && len(tc.queue) == 0 && now.Sub(tc.lastOutput) > contextExpiry {
			delete(s.contexts, cid)
			tc.stop()
		}
	}
	return s.contexts[id]
}

// parseInput validates a generation input, filling the fields a continuation may omit
// from its context's first input.
func (s *ttsSocket) parseInput(req object, tc *ttsContext) (ttsInput, *apiError) {
	if tc != nil {
		if tc.ended {
			return ttsInput{}, badRequest("context %s has ended (continue:false or cancel); "+
				"use a new context_id", quote(tc.id))
		}
		merged := object{fields: map[string]json.RawMessage{}}
		for k, v := range req.fields {
			merged.fields[k] = v
		}
		for _, k := range inherited {
			if !merged.has(k) && tc.first.has(k) {
				merged.fields[k] = tc.first.fields[k]
			}
		}
		if !merged.has("transcript") {
			merged.fields["transcript"] = json.RawMessage(`""`)
		}
		req = merged
	}

	t, perr := parseTTS(req)
	if perr != nil {
		return ttsInput{}, perr
	}
	opts, perr := parseStreamOptions(req, t)
	if perr != nil {
		return ttsInput{}, perr
	}
	cont, _, perr := req.boolean("continue")
	if perr != nil {
		return ttsInput{}, perr
	}
	flush, _, perr := req.boolean("flush")
	if perr != nil {
		return ttsInput{}, perr
	}
	delay, present, perr := req.integer("max_buffer_delay_ms")
	switch {
	case perr != nil:
		return ttsInput{}, perr
	case present && (delay < 0 || delay > 5000):
		return ttsInput{}, badRequest("max_buffer_delay_ms must be between 0 and 5000, got %d",
			delay)
	}

	if tc != nil {
		base, now := *tc.base, *t
		base.Transcript, now.Transcript = "", ""
		if base != now || opts.words != tc.opts.words || opts.phonemes != tc.opts.phonemes {
			return ttsInput{}, badRequest("every input of context %s must repeat the first "+
				"input's model_id, voice, output_format, language and options; only "+
				"transcript, continue and flush may change", quote(tc.id))
		}
	}
	return ttsInput{t: t, flush: flush, last: !cont}, nil
}

// cancelLocked drops the inputs of tc that have not started; the one being spoken
// finishes and done follows it.
func (s *ttsSocket) cancelLocked(tc *ttsContext) {
	if tc == nil {
		return // finished, expired or never opened: nothing left to stop
	}
	tc.queue = []ttsInput{{last: true}}
	tc.ended = true
	s.startLocked(tc)
}

// dropLocked forgets tc; its worker stops when its queue is empty.
func (s *ttsSocket) dropLocked(tc *ttsContext) {
	tc.queue = nil
	tc.ended = true
	if s.contexts[tc.id] == tc {
		delete(s.contexts, tc.id)
	}
}

// work speaks tc's queue in order until it is empty, then closes running.
func (s *ttsSocket) work(tc *ttsContext, running chan struct{}) {
	defer s.workers.Done()
	defer close(running)
	for {
		s.mu.Lock()
		if len(tc.queue) == 0 || tc.ctx.Err() != nil {
			tc.running = nil
			s.mu.Unlock()
			return
		}
		in := tc.queue[0]
		tc.queue = tc.queue[1:]
		tc.speaking = in.t != nil && in.t.Transcript != ""
		g := generation{t: in.t, opts: tc.opts, contextID: tc.id, flushID: tc.flushID,
			offset: tc.offset}
		s.mu.Unlock()

		if err := s.speak(tc, in, g); err != nil {
			s.mu.Lock()
			tc.running = nil
			s.mu.Unlock()
			return
		}
	}
}

// speak sends one input's audio and the events that follow it (flush_done, done). An
// error ends the worker: the connection is gone, or the context failed.
func (s *ttsSocket) speak(tc *ttsContext, in ttsInput, g generation) error {
	if in.t != nil && in.t.Transcript != "" {
		emit := func(ev ttsEvent) error { return s.send(ev) }
		seconds, err := s.e.generate(tc.ctx, g, emit)
		s.mu.Lock()
		tc.speaking, tc.lastOutput = false, s.e.now()
		tc.offset += seconds
		if errors.Is(err, errFault) {
			s.dropLocked(tc)
		}
		s.mu.Unlock()

		if errors.Is(err, errFault) {
			s.fail(faultError, tc.id)
		}
		if err != nil {
			return err
		}
	}

	if in.flush {
		err := s.send(ttsEvent{Type: "flush_done", ContextID: tc.id, FlushDone: true,
			FlushID: g.flushID, StatusCode: streamStatus})
		if err != nil {
			return err
		}
		s.mu.Lock()
		tc.flushID++
		s.mu.Unlock()
	}

	if in.last {
		// Under the lock, so that an input reusing the id opens its new context only
		// after this done is on the wire.
		s.mu.Lock()
		defer s.mu.Unlock()
		s.dropLocked(tc)
		return s.send(ttsEvent{Type: "done", ContextID: tc.id, Done: true,
			StatusCode: streamStatus})
	}
	return nil
}

// send writes one event. Writes from several contexts interleave whole messages.
func (s *ttsSocket) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if err := s.conn.Write(s.ctx, websocket.MessageText, data); err != nil {
		return err
	}
	s.idle.touch()
	return nil
}

// fail sends an error event; the connection stays open.
func (s *ttsSocket) fail(err *apiError, contextID string) {
	s.errorEvents.Add(1)
	_ = s.send(s.c.streamError(err, contextID))
}
