package cartesia

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"reflect"
	"testing"
)

// checkDecodeError is what every decoder promises about a refusal: no half-built event,
// and input that is not JSON at all is reported as a *json.SyntaxError the caller can
// test for, not a bare string.
func checkDecodeError(t *testing.T, raw []byte, err error, ev any, zero any) {
	t.Helper()
	if !reflect.DeepEqual(ev, zero) {
		t.Fatalf("refused %q with %v but returned %+v", raw, err, ev)
	}
	if !json.Valid(raw) {
		var syntax *json.SyntaxError
		if !errors.As(err, &syntax) {
			t.Fatalf("invalid JSON %q refused with %T %v, want a wrapped *json.SyntaxError",
				raw, err, err)
		}
	}
}

// checkAPIError is what an error event must carry: something to show the user.
func checkAPIError(t *testing.T, raw []byte, e *APIError) {
	t.Helper()
	if e == nil {
		t.Fatalf("error event %q decoded without Err", raw)
	}
	if e.Message == "" && e.Title == "" {
		t.Fatalf("error event %q decoded to an APIError with no text", raw)
	}
	_ = e.Error()
}

var eventSeeds = []string{
	`{"type":"chunk","data":"AAEC+g==","done":false,"status_code":206,"step_time":41.5,` +
		`"context_id":"c1","flush_id":2}`,
	`{"type":"timestamps","context_id":"c1","word_timestamps":{"words":["Hi","there"],` +
		`"start":[0,0.2],"end":[0.1,0.5]}}`,
	`{"type":"flush_done","context_id":"c1","flush_done":true,"flush_id":1}`,
	`{"type":"done","done":true,"status_code":200,"context_id":"c1"}`,
	`{"type":"error","status_code":400,"error_code":"invalid_request","title":"Invalid",` +
		`"message":"bad","request_id":"r1","done":true}`,
	`{"type":"error","error":"legacy text"}`,
	`{"type":"transcript","text":"hello","is_final":true,"duration":1.25,"language":"en",` +
		`"words":[{"word":"hello","start":0,"end":0.4}],"request_id":"r"}`,
	`{"type":"turn.end","transcript":"hi"}`,
	`{"event":"ack","stream_id":"s1","config":{"input_format":"pcm_16000"}}`,
	`{"event":"media_output","stream_id":"s1","media":{"payload":"AAAA"}}`,
	`{"event":"dtmf","stream_id":"s1","dtmf":"5"}`,
	`{"event":"custom","metadata":{"k":1}}`,
	`{"event":"clear"}`,
	`{"type":"chunk","data":"not base64!"}`,
	`{"type":"timestamps","word_timestamps":{"words":["a"],"start":[],"end":[1]}}`,
	`{"type":1}`, `[]`, `null`, `"chunk"`, `{"type":"chunk"`, "", "\xff",
}

// FuzzDecodeTTSEvent: any bytes from a TTS stream decode to a typed event or a wrapped
// error; a decoded chunk's audio is exactly its base64 data, timestamps line up.
func FuzzDecodeTTSEvent(f *testing.F) {
	for _, s := range eventSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := DecodeTTSEvent(raw)
		if err != nil {
			checkDecodeError(t, raw, err, ev, TTSEvent{})
			return
		}
		if ev.Type == "" || !bytes.Equal(ev.Raw, raw) {
			t.Fatalf("%q decoded to type %q, raw %q", raw, ev.Type, ev.Raw)
		}
		switch ev.Type {
		case TTSChunk:
			var aux struct{ Data string }
			_ = json.Unmarshal(raw, &aux)
			if want, _ := base64.StdEncoding.DecodeString(aux.Data); !bytes.Equal(ev.Audio, want) {
				t.Fatalf("chunk %q: audio %x, data says %x", raw, ev.Audio, want)
			}
		case TTSTimestamps:
			if len(ev.Start) != len(ev.Words) || len(ev.End) != len(ev.Words) {
				t.Fatalf("timestamps %q decoded with uneven lists", raw)
			}
		case TTSError:
			checkAPIError(t, raw, ev.Err)
		}
		if ev.Type != TTSError && ev.Err != nil {
			t.Fatalf("%s event %q carries an error", ev.Type, raw)
		}
	})
}

// FuzzDecodeSTTEvent: any bytes from an STT stream decode to a typed event or a wrapped
// error.
func FuzzDecodeSTTEvent(f *testing.F) {
	for _, s := range eventSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := DecodeSTTEvent(raw)
		if err != nil {
			checkDecodeError(t, raw, err, ev, STTEvent{})
			return
		}
		if ev.Type == "" || !bytes.Equal(ev.Raw, raw) {
			t.Fatalf("%q decoded to type %q, raw %q", raw, ev.Type, ev.Raw)
		}
		if (ev.Type == STTError) != (ev.Err != nil) {
			t.Fatalf("%s event %q: Err %v", ev.Type, raw, ev.Err)
		}
		if ev.Err != nil {
			checkAPIError(t, raw, ev.Err)
		}
	})
}

// FuzzDecodeAgentEvent: any bytes from an agent call decode to a named event or a
// wrapped error; media_output audio is exactly its base64 payload.
func FuzzDecodeAgentEvent(f *testing.F) {
	for _, s := range eventSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		ev, err := DecodeAgentEvent(raw)
		if err != nil {
			checkDecodeError(t, raw, err, ev, AgentEvent{})
			return
		}
		if ev.Event == "" || !bytes.Equal(ev.Raw, raw) {
			t.Fatalf("%q decoded to event %q, raw %q", raw, ev.Event, ev.Raw)
		}
		switch ev.Event {
		case AgentMediaOutput:
			var aux struct{ Media struct{ Payload string } }
			_ = json.Unmarshal(raw, &aux)
			want, _ := base64.StdEncoding.DecodeString(aux.Media.Payload)
			if !bytes.Equal(ev.Audio, want) {
				t.Fatalf("media_output %q: audio %x, payload says %x", raw, ev.Audio, want)
			}
		case AgentError:
			checkAPIError(t, raw, ev.Err)
		}
		if ev.Event != AgentError && ev.Err != nil {
			t.Fatalf("%s event %q carries an error", ev.Event, raw)
		}
	})
}

// FuzzCheckAgentID agrees with the proxy's rule: 1 to 128 of A-Z a-z 0-9 _ -.
func FuzzCheckAgentID(f *testing.F) {
	for _, s := range []string{"agent_1", "", "a/b", "..", "%2e", "é", string(make([]byte, 129))} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, id string) {
		want := len(id) >= 1 && len(id) <= 128
		for _, c := range []byte(id) {
			want = want && (c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' ||
				c >= '0' && c <= '9' || c == '_' || c == '-')
		}
		if got := CheckAgentID(id) == nil; got != want {
			t.Fatalf("CheckAgentID(%q) accepts = %v, want %v", id, got, want)
		}
	})
}
