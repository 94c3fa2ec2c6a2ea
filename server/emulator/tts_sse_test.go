package emulator

import (
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// sseEvent is one parsed frame of an event stream.
type sseEvent struct {
	name string // the event: line
	data obj    // the data: line, parsed
}

// parseSSE splits a body into frames, insisting on "event: <type>\ndata: <json>\n\n" with
// the event name equal to the data's type.
func parseSSE(t *testing.T, body []byte) []sseEvent {
	t.Helper()
	text := string(body)
	if !strings.HasSuffix(text, "\n\n") {
		t.Fatalf("stream does not end with a blank line: %q", text[max(0, len(text)-40):])
	}
	var out []sseEvent
	for _, frame := range strings.Split(strings.TrimSuffix(text, "\n\n"), "\n\n") {
		lines := strings.Split(frame, "\n")
		if len(lines) != 2 || !strings.HasPrefix(lines[0], "event: ") ||
			!strings.HasPrefix(lines[1], "data: ") {
			t.Fatalf("frame %q is not an event line and a data line", frame)
		}
		var ev sseEvent
		ev.name = strings.TrimPrefix(lines[0], "event: ")
		data := strings.TrimPrefix(lines[1], "data: ")
		if err := json.Unmarshal([]byte(data), &ev.data); err != nil {
			t.Fatalf("data of frame %q is not JSON: %v", frame, err)
		}
		if ev.data["type"] != ev.name {
			t.Errorf("frame named %q carries type %v", ev.name, ev.data["type"])
		}
		out = append(out, ev)
	}
	return out
}

func sseBody(transcript string, changes obj) string {
	body := obj{"output_format": format("raw", "pcm_s16le", 16000), "transcript": transcript}
	for k, v := range changes {
		body[k] = v
	}
	return ttsWith(body)
}

func TestTTSSSEStreamsChunksTimestampsThenDone(t *testing.T) {
	formats := []struct {
		enc  audio.Encoding
		rate int
	}{
		{audio.S16LE, 16000}, {audio.MuLaw, 8000}, {audio.F32LE, 44100}, {audio.ALaw, 22050},
	}
	const transcript = "Streaming speech, word by word."
	for _, f := range formats {
		t.Run(string(f.enc), func(t *testing.T) {
			h := newHarness(t, 0)
			r := h.do(request{path: "/tts/sse", body: sseBody(transcript, obj{
				"output_format":  format("raw", string(f.enc), f.rate),
				"add_timestamps": true, "context_id": "turn-7"})})
			if r.status != http.StatusOK ||
				r.header.Get("Content-Type") != "text/event-stream" {
				t.Fatalf("status %d, content type %q: %s", r.status,
					r.header.Get("Content-Type"), r.body)
			}
			events := parseSSE(t, r.body)

			var pcm []byte
			var words []string
			var starts, ends []float64
			for i, ev := range events {
				if ev.data["context_id"] != "turn-7" {
					t.Errorf("%s event without the context_id: %v", ev.name, ev.data)
				}
				switch ev.name {
				case "chunk":
					data, err := base64.StdEncoding.DecodeString(ev.data["data"].(string))
					if err != nil {
						t.Fatal(err)
					}
					pcm = append(pcm, data...)
					if _, ok := ev.data["step_time"].(float64); !ok {
						t.Errorf("chunk without step_time: %v", ev.data)
					}
				case "timestamps":
					// Every word's audio has been sent by the time its timestamp is.
					heard := float64(len(pcm)/f.enc.BytesPerSample()) / float64(f.rate)
					wt := ev.data["word_timestamps"].(map[string]any)
					for j, w := range wt["words"].([]any) {
						words = append(words, w.(string))
						starts = append(starts, wt["start"].([]any)[j].(float64))
						ends = append(ends, wt["end"].([]any)[j].(float64))
						if ends[len(ends)-1] > heard+0.001 {
							t.Errorf("timestamp of %q (end %.3f) came before its audio (%.3f s)",
								w, ends[len(ends)-1], heard)
						}
					}
				case "done":
					if i != len(events)-1 || ev.data["done"] != true {
						t.Errorf("done at %d of %d: %v", i, len(events), ev.data)
					}
				default:
					t.Errorf("unexpected %s event", ev.name)
				}
			}
			if events[len(events)-1].name != "done" {
				t.Fatalf("stream does not end with done")
			}

			samples, err := audio.Decode(f.enc, pcm)
			if err != nil {
				t.Fatal(err)
			}
			if got, err := tonecode.Decode(samples, f.rate); err != nil || got != transcript {
				t.Errorf("chunks decode to %q (%v), want %q", got, err, transcript)
			}
			if strings.Join(words, " ") != transcript {
				t.Errorf("timestamp words %q", words)
			}
			duration := tonecode.Duration(transcript).Seconds()
			for i := range words {
				if starts[i] < 0 || starts[i] >= ends[i] || ends[i] > duration+0.001 ||
					(i > 0 && starts[i] < ends[i-1]) {
					t.Errorf("word %q at %.3f-%.3f is out of order or past %.3f s", words[i],
						starts[i], ends[i], duration)
				}
			}
		})
	}
}

func TestTTSSSEPhonemeTimestampsAreCharacters(t *testing.T) {
	h := newHarness(t, 0)
	r := h.do(request{path: "/tts/sse", body: sseBody("Hé!", obj{"add_phoneme_timestamps": true})})
	var phonemes []string
	for _, ev := range parseSSE(t, r.body) {
		if ev.name == "timestamps" {
			t.Error("word timestamps were not asked for")
		}
		if ev.name == "phoneme_timestamps" {
			for _, p := range ev.data["phoneme_timestamps"].(map[string]any)["phonemes"].([]any) {
				phonemes = append(phonemes, p.(string))
			}
		}
	}
	if strings.Join(phonemes, ",") != "H,é,!" {
		t.Errorf("phonemes %q, want the characters", phonemes)
	}
}

func TestTTSSSEInvalidRequestsAreHTTPErrors(t *testing.T) {
	h := newHarness(t, 0)
	tests := []struct {
		name     string
		body     string
		code     string
		fragment string
	}{
		{"wav container", sseBody("Hi", obj{"output_format": format("wav", "pcm_s16le", 8000)}),
			codeInvalidRequest, `must be "raw"`},
		{"mp3 container", sseBody("Hi", obj{"output_format": obj{"container": "mp3",
			"sample_rate": 44100, "bit_rate": 128000}}), codeUnsupported, "mp3"},
		{"timestamps not a boolean", sseBody("Hi", obj{"add_timestamps": "yes"}),
			codeInvalidRequest, "add_timestamps must be true or false"},
		{"no transcript", sseBody("Hi", obj{"transcript": nil}), codeInvalidRequest,
			"transcript is required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h.do(request{path: "/tts/sse", body: tt.body}).
				wantError(t, http.StatusBadRequest, tt.code, tt.fragment)
		})
	}
}

func TestTTSSSENeedsTheTTSGrant(t *testing.T) {
	h := newHarness(t, 0)
	body := sseBody("Hi.", nil)

	r := h.do(request{path: "/tts/sse", headers: bearer(h.mint(`{"tts":true}`, 60)), body: body})
	if r.status != http.StatusOK || parseSSE(t, r.body)[len(parseSSE(t, r.body))-1].name != "done" {
		t.Errorf("with a tts token: status %d: %s", r.status, r.body)
	}
	h.do(request{path: "/tts/sse", headers: bearer(h.mint(`{"agent":true}`, 60)), body: body}).
		wantError(t, http.StatusForbidden, codeInsufficientGrant, "tts")
	h.do(request{path: "/tts/sse", headers: map[string]string{"Cartesia-Version": testVersion},
		body: body}).wantError(t, http.StatusUnauthorized, codeUnauthorized, "no credentials")
}

func TestTTSSSEErrorMidStreamIsAnErrorEvent(t *testing.T) {
	for _, version := range []string{"2025-04-16", testVersion} {
		t.Run(version, func(t *testing.T) {
			h := newHarness(t, 0)
			r := h.do(request{path: "/tts/sse", headers: map[string]string{
				"X-API-Key": testKey, "Cartesia-Version": version},
				body: sseBody("This voice breaks down.", obj{"voice": FaultVoiceID,
					"context_id": "f"})})
			if r.status != http.StatusOK {
				t.Fatalf("status %d: %s", r.status, r.body)
			}
			events := parseSSE(t, r.body)
			if len(events) != 2 || events[0].name != "chunk" || events[1].name != "error" {
				var names []string
				for _, ev := range events {
					names = append(names, ev.name)
				}
				t.Fatalf("events %v, want a chunk then an error", names)
			}
			wantErrorEvent(t, events[1].data, version < structuredErrorsSince, 500,
				codeEmulatedFault, "fault voice")
			if events[1].data["context_id"] != "f" {
				t.Errorf("error event without the context_id: %v", events[1].data)
			}
		})
	}
}
