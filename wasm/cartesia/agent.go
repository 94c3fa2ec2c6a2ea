package cartesia

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
)

// Agent event names (the "event" field; the agent protocol has no "type").
const (
	AgentStart       = "start"
	AgentAck         = "ack"
	AgentMediaInput  = "media_input"
	AgentMediaOutput = "media_output"
	AgentClear       = "clear"
	AgentDTMF        = "dtmf"
	AgentCustom      = "custom"
	AgentTransfer    = "transfer_call"
	AgentError       = "error"
)

// InputFormats are the audio formats an agent call accepts.
var InputFormats = []string{"pcm_16000", "pcm_24000", "pcm_44100", "mulaw_8000"}

// CheckAgentID reports whether id can name an agent in a URL path: 1 to 128 of
// A-Z a-z 0-9 _ - (the proxy enforces the same; checking here gives a clear error before
// any connection). Written out rather than with regexp, which would grow the bundle.
func CheckAgentID(id string) error {
	ok := len(id) >= 1 && len(id) <= 128
	for i := 0; ok && i < len(id); i++ {
		c := id[i]
		ok = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			c == '_' || c == '-'
	}
	if !ok {
		return errors.New("cartesia: agent id must be 1 to 128 of A-Z a-z 0-9 _ -")
	}
	return nil
}

// AgentStartOptions configure the start event of a call.
type AgentStartOptions struct {
	InputFormat string          `json:"inputFormat"`
	VoiceID     string          `json:"voiceId,omitempty"`
	Metadata    json.RawMessage `json:"metadata,omitempty"`
	Agent       json.RawMessage `json:"agent,omitempty"`
}

// AgentStartMessage returns the start event, which must be the first message of a call.
func AgentStartMessage(streamID string, o AgentStartOptions) ([]byte, error) {
	known := false
	for _, f := range InputFormats {
		known = known || f == o.InputFormat
	}
	if !known {
		return nil, fmt.Errorf("cartesia: inputFormat %q is not one of %v", o.InputFormat,
			InputFormats)
	}
	m := agentMessage{Event: AgentStart, StreamID: streamID,
		Config: &agentConfig{InputFormat: o.InputFormat, VoiceID: o.VoiceID}}
	for _, f := range []struct {
		name string
		raw  json.RawMessage
		dst  *json.RawMessage
	}{{"metadata", o.Metadata, &m.Metadata}, {"agent", o.Agent, &m.Agent}} {
		if len(f.raw) == 0 || string(f.raw) == "null" {
			continue
		}
		if !isObject(f.raw) {
			return nil, fmt.Errorf("cartesia: %s must be a JSON object", f.name)
		}
		*f.dst = f.raw
	}
	return encode(m), nil
}

// agentMessage is every event the client sends; unused fields are left out.
type agentMessage struct {
	Agent    json.RawMessage `json:"agent,omitempty"`
	Config   *agentConfig    `json:"config,omitempty"`
	DTMF     string          `json:"dtmf,omitempty"`
	Event    string          `json:"event"`
	Media    *agentMedia     `json:"media,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	StreamID string          `json:"stream_id"`
}

type agentConfig struct {
	InputFormat string `json:"input_format"`
	VoiceID     string `json:"voice_id,omitempty"`
}

type agentMedia struct {
	Payload string `json:"payload"`
}

// isObject reports whether raw is a JSON object.
func isObject(raw []byte) bool {
	var obj map[string]json.RawMessage
	return json.Unmarshal(raw, &obj) == nil && obj != nil
}

// AgentMediaMessage returns a media_input event carrying audio as base64.
func AgentMediaMessage(streamID string, audio []byte) []byte {
	return encode(agentMessage{Event: AgentMediaInput, StreamID: streamID,
		Media: &agentMedia{Payload: base64.StdEncoding.EncodeToString(audio)}})
}

// AgentDTMFMessage returns a dtmf event; digit is one of 0-9, * and #.
func AgentDTMFMessage(streamID, digit string) ([]byte, error) {
	if len(digit) != 1 || !(digit[0] >= '0' && digit[0] <= '9' || digit == "*" ||
		digit == "#") {
		return nil, fmt.Errorf("cartesia: dtmf digit %q is not one of 0-9 * #", digit)
	}
	return encode(agentMessage{Event: AgentDTMF, StreamID: streamID, DTMF: digit}), nil
}

// AgentCustomMessage returns a custom event; metadata is a JSON object.
func AgentCustomMessage(streamID string, metadata []byte) ([]byte, error) {
	if !isObject(metadata) {
		return nil, errors.New("cartesia: custom metadata must be a JSON object")
	}
	return encode(agentMessage{Event: AgentCustom, StreamID: streamID,
		Metadata: metadata}), nil
}

// AgentEvent is one event the agent sent.
type AgentEvent struct {
	// Event is ack, media_output, clear, dtmf, custom, transfer_call, error, or another
	// event Cartesia adds.
	Event string

	// StreamID is the call's stream id.
	StreamID string

	// Audio is the decoded payload of media_output.
	Audio []byte

	// Digit is the digit of a dtmf event.
	Digit string

	// Config is the resolved config of ack; Metadata the object of custom (JSON).
	Config, Metadata json.RawMessage

	// Err is set for error events.
	Err *APIError

	// Raw is the event's JSON as received.
	Raw json.RawMessage
}

// DecodeAgentEvent decodes one agent event from its JSON.
func DecodeAgentEvent(raw []byte) (AgentEvent, error) {
	var aux struct {
		Event    string          `json:"event"`
		Type     string          `json:"type"`
		StreamID string          `json:"stream_id"`
		DTMF     string          `json:"dtmf"`
		Config   json.RawMessage `json:"config"`
		Metadata json.RawMessage `json:"metadata"`
		Media    *struct {
			Payload string `json:"payload"`
		} `json:"media"`
	}
	if err := json.Unmarshal(raw, &aux); err != nil {
		return AgentEvent{}, fmt.Errorf("cartesia: decode agent event: %w", err)
	}
	ev := AgentEvent{Event: aux.Event, StreamID: aux.StreamID, Digit: aux.DTMF,
		Config: aux.Config, Metadata: aux.Metadata, Raw: append(json.RawMessage(nil), raw...)}

	// Errors follow the streaming error shape, which names itself by "type".
	if ev.Event == "" && aux.Type == AgentError {
		ev.Event = AgentError
	}
	switch ev.Event {
	case "":
		return AgentEvent{}, errors.New("cartesia: decode agent event: no event name")
	case AgentMediaOutput:
		if aux.Media == nil {
			return AgentEvent{}, errors.New("cartesia: decode media_output: no media")
		}
		audio, err := base64.StdEncoding.DecodeString(aux.Media.Payload)
		if err != nil {
			return AgentEvent{}, fmt.Errorf("cartesia: decode media_output payload: %w", err)
		}
		ev.Audio = audio
	case AgentError:
		ev.Err = decodeError(raw)
	}
	return ev, nil
}
