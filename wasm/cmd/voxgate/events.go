//go:build js && wasm

package main

import (
	"encoding/json"

	"github.com/voxgate/voxgate/wasm/cartesia"
	"github.com/voxgate/voxgate/wasm/client"
	"github.com/voxgate/voxgate/wasm/jsx"
)

// Events travel to JavaScript as [json, audio]: the event's fields as JSON text, which
// voxgate.js parses, and its audio (or null) as a Uint8Array it puts in field "audio".
// Encoding structs with encoding/json keeps the bundle smaller than building JavaScript
// objects field by field (every field set is code in the wasm module).

// ttsEvent is a TTS event as voxgate.d.ts describes it.
type ttsEvent struct {
	Type      string          `json:"type"`
	ContextID string          `json:"contextId,omitempty"`
	StepTime  *float64        `json:"stepTime,omitempty"`
	FlushID   *int            `json:"flushId,omitempty"`
	Words     []string        `json:"words,omitzero"`
	Start     []float64       `json:"start,omitzero"`
	End       []float64       `json:"end,omitzero"`
	Data      json.RawMessage `json:"data,omitempty"`
}

func ttsEventJS(ev cartesia.TTSEvent) (any, error) {
	out := ttsEvent{Type: ev.Type, ContextID: ev.ContextID}
	switch ev.Type {
	case cartesia.TTSChunk:
		if ev.HasStepTime {
			out.StepTime = &ev.StepTime
		}
		if ev.FlushID != 0 {
			out.FlushID = &ev.FlushID
		}
	case cartesia.TTSTimestamps:
		out.Words = append([]string{}, ev.Words...)
		out.Start = append([]float64{}, ev.Start...)
		out.End = append([]float64{}, ev.End...)
	case cartesia.TTSFlushDone:
		out.FlushID = &ev.FlushID
	case cartesia.TTSDone:
	default:
		out.Data = ev.Raw
	}
	return eventJS(out, ev.Audio, ev.Type == cartesia.TTSChunk)
}

// sttEvent is an STT or turn event as voxgate.d.ts describes it.
type sttEvent struct {
	Type       string          `json:"type"`
	Text       *string         `json:"text,omitempty"`
	IsFinal    *bool           `json:"isFinal,omitempty"`
	Duration   *float64        `json:"duration,omitempty"`
	Language   string          `json:"language,omitempty"`
	Words      []cartesia.Word `json:"words,omitempty"`
	Transcript *string         `json:"transcript,omitempty"`
	RequestID  string          `json:"requestId,omitempty"`
	Data       json.RawMessage `json:"data,omitempty"`
}

func sttEventJS(ev cartesia.STTEvent) (any, error) {
	out := sttEvent{Type: ev.Type, RequestID: ev.RequestID}
	switch {
	case ev.Type == cartesia.STTTranscript:
		out.Text, out.IsFinal = &ev.Text, &ev.IsFinal
		if ev.HasDuration {
			out.Duration = &ev.Duration
		}
		out.Language, out.Words = ev.Language, ev.Words
	case ev.Type == cartesia.STTFlushDone || ev.Type == cartesia.STTDone ||
		ev.Type == cartesia.TurnConnected:
	case len(ev.Type) > 5 && ev.Type[:5] == "turn.":
		if ev.HasTranscript {
			out.Transcript = &ev.Transcript
		}
	default:
		out.Data = ev.Raw
	}
	return eventJS(out, nil, false)
}

// agentEvent is an agent event as voxgate.d.ts describes it: media_output becomes
// {type:"media", audio}.
type agentEvent struct {
	Type     string          `json:"type"`
	StreamID string          `json:"streamId,omitempty"`
	Config   json.RawMessage `json:"config,omitempty"`
	Digit    string          `json:"digit,omitempty"`
	Metadata json.RawMessage `json:"metadata,omitempty"`
	Data     json.RawMessage `json:"data,omitempty"`
}

func agentEventJS(ev cartesia.AgentEvent) (any, error) {
	out := agentEvent{Type: ev.Event}
	switch ev.Event {
	case cartesia.AgentAck:
		out.StreamID, out.Config = ev.StreamID, ev.Config
	case cartesia.AgentMediaOutput:
		out.Type = "media"
	case cartesia.AgentClear:
	case cartesia.AgentDTMF:
		out.Digit = ev.Digit
	case cartesia.AgentCustom:
		out.Metadata = ev.Metadata
		if len(out.Metadata) == 0 {
			out.Metadata = json.RawMessage("{}")
		}
	default:
		out.Data = ev.Raw
	}
	return eventJS(out, ev.Audio, ev.Event == cartesia.AgentMediaOutput)
}

// eventJS encodes an event as [json, audio or null].
func eventJS(fields any, audio []byte, hasAudio bool) (any, error) {
	text, err := json.Marshal(fields)
	if err != nil {
		return nil, &client.Error{Code: client.CodeBadEvent, Message: "encode event: " +
			err.Error(), Err: err}
	}
	if !hasAudio {
		return []any{string(text), nil}, nil
	}
	arr, err := jsx.Uint8Array(audio)
	if err != nil {
		return nil, err
	}
	return []any{string(text), arr}, nil
}
