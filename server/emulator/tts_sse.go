package emulator

// The streaming TTS routes (reference §4.2, §4.3): POST /tts/sse here, WSS /tts/websocket in
// tts_ws.go. Both speak the same events (chunk, timestamps, done, error) and share the
// generation below, so a transcript sounds the same on every route.
//
// Limitation: phoneme timestamps (add_phoneme_timestamps) report the characters of the
// transcript as "phonemes", each timed by the tone-code symbols of its bytes; the tone code
// has no phonemes. use_normalized_timestamps is accepted and ignored.

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"time"

	"github.com/voxgate/voxgate/server/tonecode"
)

// FaultVoiceID is a voice that fails on purpose: a generation with it streams its first
// chunk and then ends with an error event (status 500, error_code "emulated_fault"), on
// /tts/sse and on /tts/websocket. Relay tests use it to see an upstream error mid-stream.
const FaultVoiceID = "00000000-0000-4000-8000-00000000fa17"

// codeEmulatedFault is the error code of FaultVoiceID's mid-stream failure.
const codeEmulatedFault = "emulated_fault"

// streamStatus is the status_code of non-error stream events; every example in
// Cartesia's docs shows 206.
const streamStatus = http.StatusPartialContent

// ttsEvent is one event of a TTS stream (SSE data or WebSocket message). Fields that do not
// belong to the event's type stay empty and are omitted.
type ttsEvent struct {
	Type       string   `json:"type"`
	ContextID  string   `json:"context_id,omitempty"`
	Data       string   `json:"data,omitempty"` // chunk: base64 audio
	Done       bool     `json:"done"`
	StatusCode int      `json:"status_code"`
	StepTime   *float64 `json:"step_time,omitempty"` // chunk: generation time in ms
	FlushID    int      `json:"flush_id,omitempty"`  // WebSocket only, from 1
	FlushDone  bool     `json:"flush_done,omitempty"`

	WordTimestamps    *wordTimestamps    `json:"word_timestamps,omitempty"`
	PhonemeTimestamps *phonemeTimestamps `json:"phoneme_timestamps,omitempty"`
}

type wordTimestamps struct {
	Words []string  `json:"words"`
	Start []float64 `json:"start"`
	End   []float64 `json:"end"`
}

type phonemeTimestamps struct {
	Phonemes []string  `json:"phonemes"`
	Start    []float64 `json:"start"`
	End      []float64 `json:"end"`
}

// errorEvent is the error event of the streaming routes in both version shapes (reference
// §7.1): legacy versions get {"error":"Title: message"}, later ones the structured fields.
type errorEvent struct {
	Type       string  `json:"type"`
	Done       bool    `json:"done"`
	StatusCode int     `json:"status_code"`
	ErrorCode  *string `json:"error_code,omitempty"`
	Title      string  `json:"title,omitempty"`
	Message    string  `json:"message,omitempty"`
	Error      string  `json:"error,omitempty"` // legacy only
	RequestID  string  `json:"request_id,omitempty"`
	ContextID  string  `json:"context_id,omitempty"`
}

// streamError builds the error event for err in the shape of the call's version. It only
// reads the call, so stream goroutines may use it concurrently.
func (c *call) streamError(err *apiError, contextID string) errorEvent {
	ev := errorEvent{Type: "error", Done: true, StatusCode: err.status, ContextID: contextID}
	if c.legacyErrors() {
		ev.Error = err.title + ": " + err.message
		return ev
	}
	code := err.code
	ev.ErrorCode, ev.Title, ev.Message, ev.RequestID = &code, err.title, err.message, c.id
	return ev
}

// streamOptions are the request fields of the streaming routes beyond parseTTS.
type streamOptions struct {
	words, phonemes bool
	contextID       string
}

// parseStreamOptions reads the timestamp switches and context_id, and insists on a raw
// container: the streaming routes cannot frame a WAV header (reference §4).
func parseStreamOptions(req object, t *ttsRequest) (streamOptions, *apiError) {
	var o streamOptions
	if t.Container != "raw" {
		return o, badRequest(`output_format.container must be "raw" on the streaming ` +
			`routes (/tts/sse and /tts/websocket)`)
	}
	var err *apiError
	if o.words, _, err = req.boolean("add_timestamps"); err != nil {
		return o, err
	}
	if o.phonemes, _, err = req.boolean("add_phoneme_timestamps"); err != nil {
		return o, err
	}
	if _, _, err = req.boolean("use_normalized_timestamps"); err != nil {
		return o, err
	}
	if o.contextID, _, err = req.str("context_id"); err != nil {
		return o, err
	}
	if len(o.contextID) > 256 {
		return o, badRequest("context_id is longer than 256 bytes")
	}
	return o, nil
}

// errFault ends a FaultVoiceID generation.
var errFault = errors.New("emulator: the fault voice stopped on purpose")

// faultError is what a FaultVoiceID generation reports.
var faultError = &apiError{http.StatusInternalServerError, codeEmulatedFault, "Emulated fault",
	"the emulator's fault voice " + FaultVoiceID + " ends every generation after its first " +
		"chunk, to test how errors in the middle of a stream are handled"}

// generation is one transcript to speak in a stream, and where its audio sits in the
// stream's timeline (offset: seconds of audio sent before it on the same context).
type generation struct {
	t         *ttsRequest
	opts      streamOptions
	contextID string
	flushID   int // 0: not a WebSocket (no flush ids)
	offset    float64
}

// generate streams the tone code of g's transcript as chunk events, with timestamps events
// for the words (and characters) whose audio has been sent so far, and returns the
// seconds of audio it produced. It stops with ctx or when emit fails; FaultVoiceID stops it
// with errFault after the first chunk.
func (e *Emulator) generate(ctx context.Context, g generation, emit func(ttsEvent) error) (
	float64, error) {
	sig := tonecode.NewSignal(g.t.Transcript, g.t.SampleRate)
	var words, chars []tonecode.Span // spans whose timestamps are not sent yet
	if g.opts.words {
		words = tonecode.Timeline(g.t.Transcript)
	}
	if g.opts.phonemes {
		chars = tonecode.Chars(g.t.Transcript)
	}

	sent := 0 // samples sent so far
	last := time.Now()
	err := e.streamAudio(ctx, sig, g.t.Encoding, g.t.Volume, func(p []byte) error {
		step := float64(time.Since(last).Microseconds()) / 1000
		last = time.Now()
		ev := ttsEvent{Type: "chunk", ContextID: g.contextID, StatusCode: streamStatus,
			Data: base64.StdEncoding.EncodeToString(p), StepTime: &step, FlushID: g.flushID}
		if err := emit(ev); err != nil {
			return err
		}
		sent += len(p) / g.t.Encoding.BytesPerSample()
		if g.t.VoiceID == FaultVoiceID {
			return errFault
		}

		// Timestamps follow the chunk that completes their words, as a player needs them.
		heard := float64(sent) / float64(g.t.SampleRate)
		if sent >= sig.Len() {
			heard = math.Inf(1) // the last chunk: whatever rounding left behind goes too
		}
		return emitSpans(&words, &chars, heard, g, emit)
	})
	return float64(sent) / float64(g.t.SampleRate), err
}

// emitSpans sends the word and character timestamps that end by heard, shifted by the
// generation's offset, and drops them from the pending lists.
func emitSpans(words, chars *[]tonecode.Span, heard float64, g generation,
	emit func(ttsEvent) error) error {
	if w := takeSpans(words, heard); len(w) > 0 {
		ts := &wordTimestamps{}
		for _, s := range w {
			ts.Words = append(ts.Words, s.Text)
			ts.Start = append(ts.Start, round3(g.offset+s.Start))
			ts.End = append(ts.End, round3(g.offset+s.End))
		}
		ev := ttsEvent{Type: "timestamps", ContextID: g.contextID, StatusCode: streamStatus,
			FlushID: g.flushID, WordTimestamps: ts}
		if err := emit(ev); err != nil {
			return err
		}
	}
	if ch := takeSpans(chars, heard); len(ch) > 0 {
		ts := &phonemeTimestamps{}
		for _, s := range ch {
			ts.Phonemes = append(ts.Phonemes, s.Text)
			ts.Start = append(ts.Start, round3(g.offset+s.Start))
			ts.End = append(ts.End, round3(g.offset+s.End))
		}
		ev := ttsEvent{Type: "phoneme_timestamps", ContextID: g.contextID,
			StatusCode: streamStatus, FlushID: g.flushID, PhonemeTimestamps: ts}
		if err := emit(ev); err != nil {
			return err
		}
	}
	return nil
}

// takeSpans removes and returns the leading spans that end by t.
func takeSpans(spans *[]tonecode.Span, t float64) []tonecode.Span {
	n := 0
	for n < len(*spans) && (*spans)[n].End <= t {
		n++
	}
	done := (*spans)[:n]
	*spans = (*spans)[n:]
	return done
}

// round3 rounds seconds to milliseconds, which is all a timestamp needs.
func round3(s float64) float64 {
	return float64(int64(s*1000+0.5)) / 1000
}

// registerTTSStreams adds the streaming TTS routes.
func (e *Emulator) registerTTSStreams() {
	e.handle("/tts/sse", endpoint{name: "tts_sse", methods: []string{http.MethodPost},
		needsVersion: true, auth: authGrant, grant: grantTTS, serve: e.ttsSSE})
	e.handle("/tts/websocket", endpoint{name: "tts_websocket", methods: []string{http.MethodGet},
		needsVersion: true, auth: authGrant, grant: grantTTS, serve: e.ttsWebSocket})
}

// ttsSSE answers POST /tts/sse (reference §4.2): the request is validated whole first, so
// every problem with it is an HTTP error; once the 200 is sent, the audio follows as chunk
// and timestamps events, then done, or an error event if generation fails. Every frame is
// "event: <type>\ndata: <json>\n\n" and is flushed at once.
func (e *Emulator) ttsSSE(c *call) {
	req, t, ok := c.readTTS()
	if !ok {
		return
	}
	opts, perr := parseStreamOptions(req, t)
	if perr != nil {
		c.failWith(perr)
		return
	}
	c.logAttrs = append(c.logAttrs, slog.String("model", t.ModelID),
		slog.String("output", string(t.Encoding)), slog.Int("sample_rate", t.SampleRate),
		slog.Int("chars", len([]rune(t.Transcript))))

	h := c.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	c.w.WriteHeader(http.StatusOK)
	send := func(typ string, v any) error {
		data, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("emulator: encode %s event: %w", typ, err)
		}
		if _, err := fmt.Fprintf(c.w, "event: %s\ndata: %s\n\n", typ, data); err != nil {
			return err
		}
		return http.NewResponseController(c.w).Flush()
	}

	g := generation{t: t, opts: opts, contextID: opts.contextID}
	_, err := e.generate(c.r.Context(), g, func(ev ttsEvent) error { return send(ev.Type, ev) })
	switch {
	case errors.Is(err, errFault):
		c.errorCode = faultError.code
		err = send("error", c.streamError(faultError, opts.contextID))
	case err == nil:
		err = send("done", ttsEvent{Type: "done", ContextID: opts.contextID, Done: true,
			StatusCode: streamStatus})
	}
	if err != nil {
		c.logAttrs = append(c.logAttrs, slog.Bool("aborted", true),
			slog.String("abort_reason", abortReason(err)))
	}
}
