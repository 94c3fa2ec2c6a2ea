package cartesia

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
)

// STT event types of /stt/websocket and /stt/turns/websocket.
const (
	STTTranscript = "transcript"
	STTFlushDone  = "flush_done"
	STTDone       = "done"
	STTError      = "error"
	TurnConnected = "connected"
)

// Commands of /stt/websocket: bare text frames, not JSON.
const (
	CommandFinalize = "finalize"
	CommandClose    = "close"
)

// STTOptions are the query parameters of /stt/websocket.
type STTOptions struct {
	Model      string   `json:"model"`
	Encoding   string   `json:"encoding"`
	SampleRate int      `json:"sample_rate"`
	Language   string   `json:"language,omitempty"`
	MinVolume  *float64 `json:"min_volume,omitempty"`
	MaxSilence *float64 `json:"max_silence_duration_secs,omitempty"`
	Keyterms   []string `json:"keyterm,omitempty"`
}

// Query checks the options and returns the query string (without "?").
func (o STTOptions) Query() (string, error) {
	q, err := baseQuery(o.Model, o.Encoding, o.SampleRate, o.Keyterms)
	if err != nil {
		return "", err
	}
	if o.Language != "" {
		q.Set("language", o.Language)
	}
	if v := o.MinVolume; v != nil {
		if *v < 0 || *v > 1 {
			return "", errors.New("cartesia: min_volume must be between 0 and 1")
		}
		q.Set("min_volume", formatFloat(*v))
	}
	if v := o.MaxSilence; v != nil {
		if *v <= 0 {
			return "", errors.New("cartesia: max_silence_duration_secs must be positive")
		}
		q.Set("max_silence_duration_secs", formatFloat(*v))
	}
	return q.Encode(), nil
}

// TurnOptions are the query parameters of /stt/turns/websocket.
type TurnOptions struct {
	Model                 string   `json:"model"`
	Encoding              string   `json:"encoding"`
	SampleRate            int      `json:"sample_rate"`
	Keyterms              []string `json:"keyterm,omitempty"`
	TurnStartThreshold    *float64 `json:"turn_start_threshold,omitempty"`
	TurnEagerEndThreshold *float64 `json:"turn_eager_end_threshold,omitempty"`
	TurnEndThreshold      *float64 `json:"turn_end_threshold,omitempty"`
	TurnEndTimeoutMs      *int     `json:"turn_end_timeout_ms,omitempty"`
}

// Query checks the options and returns the query string (without "?"). Threshold
// ranges are left to Cartesia, which documents and enforces them.
func (o TurnOptions) Query() (string, error) {
	q, err := baseQuery(o.Model, o.Encoding, o.SampleRate, o.Keyterms)
	if err != nil {
		return "", err
	}
	for name, v := range map[string]*float64{
		"turn_start_threshold":     o.TurnStartThreshold,
		"turn_eager_end_threshold": o.TurnEagerEndThreshold,
		"turn_end_threshold":       o.TurnEndThreshold,
	} {
		if v != nil {
			q.Set(name, formatFloat(*v))
		}
	}
	if v := o.TurnEndTimeoutMs; v != nil {
		q.Set("turn_end_timeout_ms", strconv.Itoa(*v))
	}
	return q.Encode(), nil
}

// maxKeyterms is Cartesia's documented limit on keyterm parameters.
const maxKeyterms = 100

func baseQuery(model, encoding string, rate int, keyterms []string) (url.Values, error) {
	switch {
	case model == "":
		return nil, errors.New("cartesia: model is required")
	case encoding == "":
		return nil, errors.New("cartesia: encoding is required")
	case rate <= 0:
		return nil, errors.New("cartesia: sample_rate must be a positive integer")
	case len(keyterms) > maxKeyterms:
		return nil, fmt.Errorf("cartesia: at most %d keyterms", maxKeyterms)
	}
	q := url.Values{}
	q.Set("model", model)
	q.Set("encoding", encoding)
	q.Set("sample_rate", strconv.Itoa(rate))
	for _, k := range keyterms {
		q.Add("keyterm", k)
	}
	return q, nil
}

func formatFloat(v float64) string { return strconv.FormatFloat(v, 'f', -1, 64) }

// TurnConfig returns the {"type":"config"} message of /stt/turns/websocket; turn is the
// object of thresholds (start_threshold, eager_end_threshold, end_threshold,
// end_timeout_ms) as JSON.
func TurnConfig(turn []byte) ([]byte, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(turn, &fields); err != nil || fields == nil {
		return nil, errors.New("cartesia: turn config must be a JSON object")
	}
	return encode(map[string]any{"type": "config", "turn": fields}), nil
}

// TurnClose is the {"type":"close"} message of /stt/turns/websocket.
func TurnClose() []byte { return []byte(`{"type":"close"}`) }

// Word is one word of a transcript with its times in seconds.
type Word struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// STTEvent is one event of /stt/websocket or /stt/turns/websocket.
type STTEvent struct {
	// Type is transcript, flush_done, done, error, connected, turn.start, turn.update,
	// turn.eager_end, turn.resume, turn.end, or another type Cartesia adds.
	Type string

	// Text is a transcript's text.
	Text string

	// IsFinal marks a final transcript.
	IsFinal bool

	// Duration is the audio duration in seconds; HasDuration says whether it was sent.
	Duration    float64
	HasDuration bool

	// Language is the detected or declared language, when sent.
	Language string

	// Words are the word timestamps, when sent.
	Words []Word

	// Transcript is the turn transcript of turn.* events; HasTranscript says whether sent.
	Transcript    string
	HasTranscript bool

	// RequestID is Cartesia's request id.
	RequestID string

	// Err is set for error events.
	Err *APIError

	// Raw is the event's JSON as received.
	Raw json.RawMessage
}

// DecodeSTTEvent decodes one STT or turn event from its JSON.
func DecodeSTTEvent(raw []byte) (STTEvent, error) {
	var aux struct {
		Type       string   `json:"type"`
		Text       string   `json:"text"`
		IsFinal    bool     `json:"is_final"`
		Duration   *float64 `json:"duration"`
		Language   string   `json:"language"`
		Words      []Word   `json:"words"`
		Transcript *string  `json:"transcript"`
		RequestID  string   `json:"request_id"`
	}
	if err := json.Unmarshal(raw, &aux); err != nil {
		return STTEvent{}, fmt.Errorf("cartesia: decode STT event: %w", err)
	}
	if aux.Type == "" {
		return STTEvent{}, errors.New("cartesia: decode STT event: no type")
	}

	ev := STTEvent{Type: aux.Type, Text: aux.Text, IsFinal: aux.IsFinal,
		Language: aux.Language, Words: aux.Words, RequestID: aux.RequestID,
		Raw: append(json.RawMessage(nil), raw...)}
	if aux.Duration != nil {
		ev.Duration, ev.HasDuration = *aux.Duration, true
	}
	if aux.Transcript != nil {
		ev.Transcript, ev.HasTranscript = *aux.Transcript, true
	}
	if aux.Type == STTError {
		ev.Err = decodeError(raw)
	}
	return ev, nil
}

// Transcription is the answer of POST /stt and POST /audio/transcriptions.
type Transcription struct {
	Text     string   `json:"text"`
	Language string   `json:"language,omitempty"`
	Duration *float64 `json:"duration,omitempty"`
	Words    []Word   `json:"words,omitempty"`
}

// BatchOptions are the form fields (and, for /stt, query parameters) of a batch
// transcription.
type BatchOptions struct {
	Model      string `json:"model"`
	Language   string `json:"language,omitempty"`
	Timestamps bool   `json:"timestamps,omitempty"`
	Encoding   string `json:"encoding,omitempty"`
	SampleRate int    `json:"sample_rate,omitempty"`
	Filename   string `json:"filename,omitempty"`
}

// Field is one multipart form field with a text value.
type Field struct {
	Name, Value string
}

// Form checks the options and returns the text fields of the multipart form (the file
// field comes first and is added by the caller) and the query string (only /stt takes
// encoding and sample_rate, as query parameters; openai is true for
// /audio/transcriptions, which takes neither).
func (o BatchOptions) Form(openai bool) ([]Field, string, error) {
	if o.Model == "" {
		return nil, "", errors.New("cartesia: model is required")
	}
	fields := []Field{{"model", o.Model}}
	if o.Language != "" {
		fields = append(fields, Field{"language", o.Language})
	}
	if o.Timestamps {
		fields = append(fields, Field{"timestamp_granularities[]", "word"})
	}

	if openai {
		if o.Encoding != "" || o.SampleRate != 0 {
			return nil, "", errors.New("cartesia: /audio/transcriptions takes no " +
				"encoding or sample_rate")
		}
		return fields, "", nil
	}
	q := url.Values{}
	if o.Encoding != "" {
		q.Set("encoding", o.Encoding)
	}
	if o.SampleRate < 0 {
		return nil, "", errors.New("cartesia: sample_rate must be positive")
	}
	if o.SampleRate > 0 {
		q.Set("sample_rate", strconv.Itoa(o.SampleRate))
	}
	return fields, q.Encode(), nil
}
