package cartesia

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// TTS event types. The client passes any other type on with only Type and Raw set.
const (
	TTSChunk      = "chunk"
	TTSTimestamps = "timestamps"
	TTSFlushDone  = "flush_done"
	TTSDone       = "done"
	TTSError      = "error"
)

// TTSEvent is one event of /tts/sse or /tts/websocket.
type TTSEvent struct {
	// Type is chunk, timestamps, flush_done, done, error, or another type Cartesia adds.
	Type string

	// ContextID is the context the event belongs to, empty when the event has none.
	ContextID string

	// Audio is the decoded audio of a chunk.
	Audio []byte

	// StepTime is the chunk's generation time in ms; HasStepTime says whether it was sent.
	StepTime    float64
	HasStepTime bool

	// Words, Start and End are the word timestamps (seconds) of a timestamps event.
	Words      []string
	Start, End []float64

	// FlushID is the flush id of chunk, timestamps and flush_done events (0 when absent).
	FlushID int

	// Err is set for error events.
	Err *APIError

	// Raw is the event's JSON as received.
	Raw json.RawMessage
}

// DecodeTTSEvent decodes one TTS event from its JSON.
func DecodeTTSEvent(raw []byte) (TTSEvent, error) {
	var aux struct {
		Type      string   `json:"type"`
		ContextID string   `json:"context_id"`
		Data      *string  `json:"data"`
		StepTime  *float64 `json:"step_time"`
		FlushID   int      `json:"flush_id"`
		Words     *struct {
			Words []string  `json:"words"`
			Start []float64 `json:"start"`
			End   []float64 `json:"end"`
		} `json:"word_timestamps"`
	}
	if err := json.Unmarshal(raw, &aux); err != nil {
		return TTSEvent{}, fmt.Errorf("cartesia: decode TTS event: %w", err)
	}
	if aux.Type == "" {
		return TTSEvent{}, errors.New("cartesia: decode TTS event: no type")
	}

	ev := TTSEvent{Type: aux.Type, ContextID: aux.ContextID, FlushID: aux.FlushID,
		Raw: append(json.RawMessage(nil), raw...)}
	switch aux.Type {
	case TTSChunk:
		if aux.Data == nil {
			return TTSEvent{}, errors.New("cartesia: decode TTS chunk: no data")
		}
		audio, err := base64.StdEncoding.DecodeString(*aux.Data)
		if err != nil {
			return TTSEvent{}, fmt.Errorf("cartesia: decode TTS chunk audio: %w", err)
		}
		ev.Audio = audio
		if aux.StepTime != nil {
			ev.StepTime, ev.HasStepTime = *aux.StepTime, true
		}
	case TTSTimestamps:
		if w := aux.Words; w != nil {
			if len(w.Start) != len(w.Words) || len(w.End) != len(w.Words) {
				return TTSEvent{}, errors.New("cartesia: decode TTS timestamps: " +
					"words, start and end differ in length")
			}
			ev.Words, ev.Start, ev.End = w.Words, w.Start, w.End
		}
	case TTSError:
		ev.Err = decodeError(raw)
	}
	return ev, nil
}

// TTSContext builds the messages of one /tts/websocket context. Every message repeats
// the base fields (model_id, voice, output_format, ...) because Cartesia requires them
// identical on every input of a context.
type TTSContext struct {
	id   string
	base map[string]json.RawMessage
}

// fields the context sets itself; the base must not carry them.
var contextFields = []string{"context_id", "transcript", "continue", "flush", "cancel"}

// NewTTSContext checks the base request (a JSON object with at least model_id, voice and
// output_format) and returns the context's message builder.
func NewTTSContext(id string, base []byte) (*TTSContext, error) {
	if id == "" {
		return nil, errors.New("cartesia: TTS context: empty context id")
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(base, &fields); err != nil || fields == nil {
		return nil, errors.New("cartesia: TTS context: the request must be a JSON object")
	}
	for _, name := range []string{"model_id", "voice", "output_format"} {
		if _, ok := fields[name]; !ok {
			return nil, fmt.Errorf("cartesia: TTS context: %s is required", name)
		}
	}
	for _, name := range contextFields {
		delete(fields, name)
	}
	return &TTSContext{id: id, base: fields}, nil
}

// ID returns the context id.
func (c *TTSContext) ID() string { return c.id }

// Push returns the message that adds text to the context and keeps it open; flush asks
// for a flush_done once the text so far is spoken.
func (c *TTSContext) Push(text string, flush bool) []byte {
	m := c.message(text, true)
	if flush {
		m["flush"] = json.RawMessage("true")
	}
	return encode(m)
}

// End returns the message that adds the last text (possibly empty) and ends the context.
func (c *TTSContext) End(text string) []byte {
	return encode(c.message(text, false))
}

// Cancel returns the message that cancels the context's inputs not yet generating.
func (c *TTSContext) Cancel() []byte {
	return encode(map[string]any{"context_id": c.id, "cancel": true})
}

func (c *TTSContext) message(text string, more bool) map[string]any {
	m := make(map[string]any, len(c.base)+3)
	for k, v := range c.base {
		m[k] = v
	}
	m["context_id"] = c.id
	m["transcript"] = text
	m["continue"] = more
	return m
}

// encode marshals a message built from valid JSON parts; it cannot fail.
func encode(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("cartesia: encode message: " + err.Error()) // only valid parts go in
	}
	return b
}
