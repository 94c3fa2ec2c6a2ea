package emulator

// WSS /agents/stream/{agent_id} (reference §6): a call with a voice agent. The emulated
// agent listens for tone-coded utterances in the caller's audio and answers each with the
// tone code of "You said: <text>", so a test can hold a whole conversation and read it back.
//
// The emulator's choices where Cartesia's docs are silent:
//
//   - Any agent id matching ^[A-Za-z0-9_-]{1,128}$ exists; others are 404 before the upgrade.
//   - The first message must be a valid start event; anything else closes the socket with
//     1008. A start whose input_format is unknown gets an error event, then the same close.
//   - The agent's audio (media_output) is in the caller's input_format, in 100 ms frames,
//     paced by Config.Pace. agent.introduction, when given, is spoken right after ack.
//   - The agent is talking while it sends a reply and until the reply would have finished
//     playing (its length after the reply began, on the emulator clock). When the caller's
//     audio shows the start of a tone-code frame while the agent talks, the reply stops and
//     the agent sends clear (barge-in).
//   - dtmf and custom events are echoed back. A custom event whose metadata has
//     "hangup": true makes the agent end the call: close 1000 "call ended by agent".
//   - Errors (bad payload, unknown event) are events {"event":"error", "type":"error",
//     "done":true, ...} in the version's error shape; the call goes on.
//   - stream_id in the caller's events is not checked against the call's.
//
// Limitation: the agent never sends transfer_call, and audio without tone code (a real
// voice) is never answered: the emulator cannot hear words, only its own code.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// maxAgentMessage bounds one client event. media_input carries base64 audio: a generous
// 2 s of pcm_44100 is 235 KiB, so 1 MiB fits every sensible chunk size.
const maxAgentMessage = 1 << 20

// maxUtterance is how much unanswered audio the agent keeps while a frame seems to be in
// progress; older audio is dropped so a damaged frame cannot grow the buffer forever.
const maxUtterance = 60 * time.Second

// Close reasons of the agent call (reference §6).
const (
	hangupReason   = "call ended by agent"
	notStartReason = "the first event must be start"
)

var agentIDPattern = regexp.MustCompile(`^[A-Za-z0-9_-]{1,128}$`)

// agentFormat is one input_format: 16-bit little-endian mono PCM or G.711 µ-law.
type agentFormat struct {
	enc  audio.Encoding
	rate int
}

var agentFormats = map[string]agentFormat{
	"mulaw_8000": {audio.MuLaw, 8000},
	"pcm_16000":  {audio.S16LE, 16000},
	"pcm_24000":  {audio.S16LE, 24000},
	"pcm_44100":  {audio.S16LE, 44100},
}

// agentEvent is an event the agent sends; fields not in its kind stay empty.
type agentEvent struct {
	Event    string          `json:"event"`
	StreamID string          `json:"stream_id"`
	Config   json.RawMessage `json:"config,omitempty"`
	Agent    json.RawMessage `json:"agent,omitempty"`
	Media    *agentMedia     `json:"media,omitempty"`
	DTMF     string          `json:"dtmf,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
}

type agentMedia struct {
	Payload string `json:"payload"`
}

// agentError is an error event: the agent protocol's "event" key and the error fields.
type agentError struct {
	Event    string `json:"event"`
	StreamID string `json:"stream_id,omitempty"`
	errorEvent
}

// registerAgent adds the agent call route.
func (e *Emulator) registerAgent() {
	e.handle("/agents/stream/{agent_id}", endpoint{name: "agent_stream",
		methods: []string{http.MethodGet}, needsVersion: true, auth: authGrant,
		grant: grantAgent, serve: e.agentStream})
}

// agentCall is one call in progress.
type agentCall struct {
	e      *Emulator
	c      *call
	conn   *websocket.Conn
	ctx    context.Context
	idle   *idleTimer
	agent  string
	stream string
	format agentFormat

	heard   []float32 // caller audio not yet answered
	scanned int       // len(heard) at the last search, to search only when audio grew

	// The reply being sent; only the read loop starts and stops replies.
	replyStop context.CancelFunc
	replyDone chan struct{}
	talkUntil time.Time // emulator clock: when the last reply would finish playing
	replies   sync.WaitGroup

	turns, clears int // for the log
}

// agentStream serves one call until either side ends it or it idles for Config.AgentIdle.
func (e *Emulator) agentStream(c *call) {
	id := c.r.PathValue("agent_id")
	if !agentIDPattern.MatchString(id) {
		c.fail(http.StatusNotFound, codeNotFound, "Agent not found",
			"agent ids are 1 to 128 letters, digits, '_' or '-'")
		return
	}
	conn, ok := c.acceptWebSocket(maxAgentMessage)
	if !ok {
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &agentCall{e: e, c: c, conn: conn, ctx: ctx, agent: id,
		idle: newIdleTimer(conn, e.agentIdle)}

	err := a.run()

	a.idle.stop()
	a.stopReply()
	cancel()
	_ = conn.CloseNow()
	a.replies.Wait()
	c.logAttrs = append(c.logAttrs, closeStatus(err), slog.Int("turns", a.turns),
		slog.Int("clears", a.clears))
}

// run reads the caller's events until the call ends.
func (a *agentCall) run() error {
	if err := a.start(); err != nil {
		return err
	}
	for {
		typ, data, err := a.conn.Read(a.ctx)
		if err != nil {
			return err
		}
		a.idle.touch()
		if typ != websocket.MessageText {
			a.fail(badRequest("binary messages are not accepted; audio goes in media_input " +
				"events as base64"))
			continue
		}
		if err := a.handle(data); err != nil {
			return err
		}
	}
}

// start reads the first event, which must be start, and answers ack.
func (a *agentCall) start() error {
	typ, data, err := a.conn.Read(a.ctx)
	if err != nil {
		return err
	}
	a.idle.touch()

	var head struct {
		Event string `json:"event"`
	}
	if typ != websocket.MessageText || json.Unmarshal(data, &head) != nil ||
		head.Event != "start" {
		return a.refuse(nil)
	}
	var ev struct {
		StreamID *string         `json:"stream_id"`
		Config   json.RawMessage `json:"config"`
		Agent    json.RawMessage `json:"agent"`
	}
	if json.Unmarshal(data, &ev) != nil {
		return a.refuse(badRequest("start.stream_id must be a string"))
	}
	a.stream = newUUID()
	if ev.StreamID != nil && *ev.StreamID != "" {
		a.stream = truncate(*ev.StreamID, 128)
	}

	var cfg struct {
		InputFormat string  `json:"input_format"`
		VoiceID     *string `json:"voice_id,omitempty"`
	}
	if len(ev.Config) > 0 && json.Unmarshal(ev.Config, &cfg) != nil {
		return a.refuse(badRequest("start.config must be an object"))
	}
	format, ok := agentFormats[cfg.InputFormat]
	if !ok {
		return a.refuse(badRequest("start.config.input_format must be mulaw_8000, pcm_16000, "+
			"pcm_24000 or pcm_44100, got %s", quote(cfg.InputFormat)))
	}
	var agent struct {
		SystemPrompt *string `json:"system_prompt,omitempty"`
		Introduction *string `json:"introduction,omitempty"`
	}
	if len(ev.Agent) > 0 && string(ev.Agent) != "null" && json.Unmarshal(ev.Agent, &agent) != nil {
		return a.refuse(badRequest("start.agent must be an object with system_prompt and " +
			"introduction strings"))
	}
	a.format = format

	resolved, _ := json.Marshal(cfg)
	ack := agentEvent{Event: "ack", StreamID: a.stream, Config: resolved}
	if agent.SystemPrompt != nil || agent.Introduction != nil {
		ack.Agent, _ = json.Marshal(agent)
	}
	a.c.logAttrs = append(a.c.logAttrs, slog.String("input_format", cfg.InputFormat))
	if err := a.send(ack); err != nil {
		return err
	}
	if agent.Introduction != nil && *agent.Introduction != "" {
		a.reply(*agent.Introduction)
	}
	return nil
}

// refuse ends a call whose first event is not a valid start: an error event when there
// is something to explain, then close 1008.
func (a *agentCall) refuse(perr *apiError) error {
	if perr != nil {
		a.fail(perr)
	}
	_ = a.conn.Close(websocket.StatusPolicyViolation, notStartReason)
	return fmt.Errorf("emulator: agent call refused: %s", notStartReason)
}

// handle acts on one event after start. It returns an error only when the call is over.
func (a *agentCall) handle(data []byte) error {
	var ev struct {
		Event string `json:"event"`
		Media *struct {
			Payload string `json:"payload"`
		} `json:"media"`
		DTMF     *string         `json:"dtmf"`
		Metadata json.RawMessage `json:"metadata"`
	}
	if err := json.Unmarshal(data, &ev); err != nil {
		a.fail(badRequest("the event is not a JSON object of the agent protocol"))
		return nil
	}

	switch ev.Event {
	case "media_input":
		if ev.Media == nil {
			a.fail(badRequest("media_input needs media.payload (base64 audio)"))
			return nil
		}
		a.listen(ev.Media.Payload)
	case "dtmf":
		if ev.DTMF == nil || len(*ev.DTMF) != 1 || !strings.Contains("0123456789*#", *ev.DTMF) {
			a.fail(badRequest("dtmf must be one of 0-9, * or #"))
			return nil
		}
		return a.sendOrEnd(agentEvent{Event: "dtmf", StreamID: a.stream, DTMF: *ev.DTMF})
	case "custom":
		var meta map[string]json.RawMessage
		if json.Unmarshal(ev.Metadata, &meta) != nil || meta == nil {
			a.fail(badRequest("custom needs metadata, a JSON object"))
			return nil
		}
		if string(meta["hangup"]) == "true" {
			a.stopReply()
			_ = a.conn.Close(websocket.StatusNormalClosure, hangupReason)
			return errors.New("emulator: agent hung up")
		}
		return a.sendOrEnd(agentEvent{Event: "custom", StreamID: a.stream,
			Metadata: ev.Metadata})
	case "start":
		a.fail(badRequest("the call has already started"))
	default:
		a.fail(badRequest("unknown event %s; send media_input, dtmf or custom",
			quote(ev.Event)))
	}
	return nil
}

// listen adds a media_input payload to the caller's audio, barges in when the caller
// starts speaking over the agent, and answers every utterance that is complete.
func (a *agentCall) listen(payload string) {
	raw, err := base64.StdEncoding.DecodeString(payload)
	if err != nil {
		a.fail(badRequest("media.payload is not base64"))
		return
	}
	samples, err := audio.Decode(a.format.enc, raw)
	if err != nil {
		a.fail(badRequest("media.payload is not %s audio: %v", a.format.enc, err))
		return
	}
	a.heard = append(a.heard, samples...)

	// Search once per symbol of new audio at most: the decoder cannot tell more sooner.
	if len(a.heard)-a.scanned < a.format.rate/tonecode.SymbolRate {
		return
	}
	for {
		a.scanned = len(a.heard)
		f, err := tonecode.Find(a.heard, a.format.rate, 0)
		speaking := err == nil || errors.Is(err, tonecode.ErrCorrupt)
		if speaking && a.talking() {
			a.bargeIn()
		}

		switch {
		case err == nil:
			a.heard = a.heard[f.End:]
			a.turns++
			a.reply("You said: " + f.Text)
			continue // the rest may hold the next utterance already
		case errors.Is(err, tonecode.ErrNoSignal):
			// No preamble starts before the last shortest-frame's worth of audio: keep just
			// that (and a symbol to spare) for the next search.
			keep := tonecode.SampleCount("", a.format.rate) + a.format.rate/tonecode.SymbolRate
			a.heard = a.heard[max(0, len(a.heard)-keep):]
		default:
			// A frame has begun and not yet ended (or is damaged): keep listening.
			limit := int(maxUtterance.Seconds()) * a.format.rate
			a.heard = a.heard[max(0, len(a.heard)-limit):]
		}
		if cap(a.heard) > 2*len(a.heard)+a.format.rate {
			a.heard = append([]float32(nil), a.heard...) // let the dropped audio go
		}
		a.scanned = len(a.heard)
		return
	}
}

// talking reports whether the agent is sending a reply or its audio is still playing.
func (a *agentCall) talking() bool {
	if a.replyDone != nil {
		select {
		case <-a.replyDone:
		default:
			return true
		}
	}
	return a.e.now().Before(a.talkUntil)
}

// bargeIn stops the agent mid-sentence and tells the caller to drop what it buffered.
func (a *agentCall) bargeIn() {
	a.stopReply()
	a.talkUntil = time.Time{}
	a.clears++
	_ = a.send(agentEvent{Event: "clear", StreamID: a.stream})
}

// reply speaks text in the caller's format, in 100 ms media_output events, paced by
// Config.Pace, from its own goroutine so the agent keeps listening while it talks.
func (a *agentCall) reply(text string) {
	a.stopReply()
	sig := tonecode.NewSignal(text, a.format.rate)
	a.talkUntil = a.e.now().Add(tonecode.Duration(text))

	ctx, stop := context.WithCancel(a.ctx)
	done := make(chan struct{})
	a.replyStop, a.replyDone = stop, done
	a.replies.Add(1)
	go func() {
		defer a.replies.Done()
		defer close(done)
		_ = a.e.streamAudio(ctx, sig, a.format.enc, 1, func(p []byte) error {
			return a.send(agentEvent{Event: "media_output", StreamID: a.stream,
				Media: &agentMedia{Payload: base64.StdEncoding.EncodeToString(p)}})
		})
	}()
}

// stopReply stops the reply being sent and waits until it has stopped, so nothing of it
// follows a clear.
func (a *agentCall) stopReply() {
	if a.replyStop == nil {
		return
	}
	a.replyStop()
	<-a.replyDone
	a.replyStop = nil
}

// send writes one event.
func (a *agentCall) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return a.conn.Write(a.ctx, websocket.MessageText, data)
}

// sendOrEnd sends an event from the read loop; a failed write ends the call.
func (a *agentCall) sendOrEnd(v any) error {
	if err := a.send(v); err != nil {
		return fmt.Errorf("emulator: agent send: %w", err)
	}
	return nil
}

// fail sends an error event; the call goes on.
func (a *agentCall) fail(perr *apiError) {
	_ = a.send(agentError{Event: "error", StreamID: a.stream,
		errorEvent: a.c.streamError(perr, "")})
}
