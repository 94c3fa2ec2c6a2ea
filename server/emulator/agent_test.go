package emulator

import (
	"context"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// startCall opens an agent call and sends start with the given config and extra fields;
// it returns the connection and the ack.
func startCall(t *testing.T, h *harness, inputFormat string, extra obj) (*websocket.Conn, obj) {
	t.Helper()
	conn := h.mustOpen("/agents/stream/agent_demo-1", nil)
	start := obj{"event": "start", "stream_id": "web-42",
		"config": obj{"input_format": inputFormat}}
	for k, v := range extra {
		start[k] = v
	}
	sendJSON(t, conn, start)
	ack := readEvent(t, conn)
	if ack["event"] != "ack" {
		t.Fatalf("first event %v, want ack", ack)
	}
	return conn, ack
}

// say sends text as a caller would: its tone code in the call's format, with silence
// around it, in 100 ms media_input events.
func say(t *testing.T, conn *websocket.Conn, text, inputFormat string) {
	t.Helper()
	f := agentFormats[inputFormat]
	silence := make([]float32, f.rate/5)
	samples := append(append(append([]float32{}, silence...), tonecode.Encode(text, f.rate)...),
		silence...)
	raw, err := audio.Encode(f.enc, samples)
	if err != nil {
		t.Fatal(err)
	}
	chunk := f.rate / 10 * f.enc.BytesPerSample()
	for from := 0; from < len(raw); from += chunk {
		payload := base64.StdEncoding.EncodeToString(raw[from:min(from+chunk, len(raw))])
		sendJSON(t, conn, obj{"event": "media_input", "stream_id": "web-42",
			"media": obj{"payload": payload}})
	}
}

// hear reads media_output events until their audio holds a whole tone-code frame and
// returns its text and the other event kinds seen on the way.
func hear(t *testing.T, conn *websocket.Conn, inputFormat string) (string, []string) {
	t.Helper()
	f := agentFormats[inputFormat]
	var raw []byte
	var others []string
	for {
		ev := readEvent(t, conn)
		if ev["event"] != "media_output" {
			others = append(others, ev["event"].(string))
			continue
		}
		if ev["stream_id"] != "web-42" {
			t.Errorf("media_output for stream %v", ev["stream_id"])
		}
		data, err := base64.StdEncoding.DecodeString(mediaPayload(ev))
		if err != nil {
			t.Fatal(err)
		}
		raw = append(raw, data...)
		samples, err := audio.Decode(f.enc, raw)
		if err != nil {
			t.Fatalf("media_output is not %s audio: %v", f.enc, err)
		}
		if text, err := tonecode.Decode(samples, f.rate); err == nil {
			return text, others
		}
	}
}

// mediaPayload is the media.payload of a media_output event.
func mediaPayload(ev obj) string {
	media, _ := ev["media"].(map[string]any)
	p, _ := media["payload"].(string)
	return p
}

func TestAgentHoldsAConversationInEveryInputFormat(t *testing.T) {
	for format := range agentFormats {
		t.Run(format, func(t *testing.T) {
			h := streamHarness(t, nil)
			conn, ack := startCall(t, h, format, nil)
			if ack["stream_id"] != "web-42" ||
				ack["config"].(map[string]any)["input_format"] != format {
				t.Errorf("ack %v does not echo the stream id and config", ack)
			}

			turns := []string{"Hello agent.", "What time is it?"}
			for _, turn := range turns {
				say(t, conn, turn, format)
				reply, others := hear(t, conn, format)
				if reply != "You said: "+turn {
					t.Errorf("agent said %q to %q", reply, turn)
				}
				if len(others) > 0 {
					t.Errorf("events besides the reply: %v", others)
				}
				h.clock.Advance(time.Minute) // the reply has played out
			}
		})
	}
}

func TestAgentSpeaksItsIntroductionAndGeneratesAStreamID(t *testing.T) {
	h := streamHarness(t, nil)
	conn := h.mustOpen("/agents/stream/intro", nil)
	sendJSON(t, conn, obj{"event": "start", "config": obj{"input_format": "pcm_24000"},
		"agent": obj{"introduction": "Hi, how can I help?"}})

	ack := readEvent(t, conn)
	id, _ := ack["stream_id"].(string)
	if ack["event"] != "ack" || !uuidV4.MatchString(id) {
		t.Fatalf("ack %v: want a generated stream id", ack)
	}
	if ack["agent"].(map[string]any)["introduction"] != "Hi, how can I help?" {
		t.Errorf("ack does not echo the agent override: %v", ack)
	}
	var raw []byte
	for {
		ev := readEvent(t, conn)
		if ev["stream_id"] != id {
			t.Fatalf("event %v for another stream", ev)
		}
		data, _ := base64.StdEncoding.DecodeString(mediaPayload(ev))
		raw = append(raw, data...)
		samples, _ := audio.Decode(audio.S16LE, raw)
		if text, err := tonecode.Decode(samples, 24000); err == nil {
			if text != "Hi, how can I help?" {
				t.Errorf("introduction says %q", text)
			}
			return
		}
	}
}

func TestAgentBargeInClearsAndAnswersTheNewUtterance(t *testing.T) {
	h := streamHarness(t, nil)
	conn, _ := startCall(t, h, "pcm_16000", nil)

	say(t, conn, "Please tell me a long story about the sea.", "pcm_16000")
	if ev := readEvent(t, conn); ev["event"] != "media_output" {
		t.Fatalf("event %v, want the reply starting", ev)
	}

	// The clock stands still: the agent is still talking when the caller speaks again.
	say(t, conn, "Stop.", "pcm_16000")
	for ev := readEvent(t, conn); ev["event"] != "clear"; ev = readEvent(t, conn) {
		if ev["event"] != "media_output" {
			t.Fatalf("event %v before clear", ev)
		}
	}
	reply, others := hear(t, conn, "pcm_16000")
	if reply != "You said: Stop." || len(others) > 0 {
		t.Errorf("after clear: %q, other events %v", reply, others)
	}
}

func TestAgentEchoesDTMFAndCustomEvents(t *testing.T) {
	h := streamHarness(t, nil)
	conn, _ := startCall(t, h, "mulaw_8000", nil)

	for _, digit := range []string{"0", "9", "*", "#"} {
		sendJSON(t, conn, obj{"event": "dtmf", "stream_id": "web-42", "dtmf": digit})
		if ev := readEvent(t, conn); ev["event"] != "dtmf" || ev["dtmf"] != digit ||
			ev["stream_id"] != "web-42" {
			t.Errorf("dtmf %q echoed as %v", digit, ev)
		}
	}
	sendJSON(t, conn, obj{"event": "custom", "stream_id": "web-42",
		"metadata": obj{"page": "checkout", "step": 2}})
	ev := readEvent(t, conn)
	meta, _ := ev["metadata"].(map[string]any)
	if ev["event"] != "custom" || meta["page"] != "checkout" || meta["step"] != float64(2) {
		t.Errorf("custom echoed as %v", ev)
	}

	// Only "hangup": true ends the call; anything else is echoed like any metadata.
	sendJSON(t, conn, obj{"event": "custom", "metadata": obj{"hangup": "later"}})
	if ev := readEvent(t, conn); ev["event"] != "custom" {
		t.Errorf("custom with hangup \"later\" answered %v", ev)
	}
}

func TestAgentBadEventsGetErrorEventsAndTheCallGoesOn(t *testing.T) {
	tests := []struct {
		name     string
		event    obj
		fragment string
	}{
		{"dtmf letter", obj{"event": "dtmf", "dtmf": "A"}, "dtmf must be"},
		{"dtmf missing", obj{"event": "dtmf"}, "dtmf must be"},
		{"payload not base64", obj{"event": "media_input", "media": obj{"payload": "%%"}},
			"not base64"},
		{"odd pcm bytes", obj{"event": "media_input",
			"media": obj{"payload": base64.StdEncoding.EncodeToString([]byte{1, 2, 3})}},
			"not pcm_s16le audio"},
		{"no media", obj{"event": "media_input"}, "media.payload"},
		{"custom without metadata", obj{"event": "custom"}, "metadata"},
		{"second start", obj{"event": "start", "config": obj{"input_format": "pcm_16000"}},
			"already started"},
		{"unknown event", obj{"event": "transfer"}, "unknown event"},
	}
	h := streamHarness(t, nil)
	for _, version := range []string{"2025-04-16", testVersion} {
		for _, tt := range tests {
			t.Run(version+"/"+tt.name, func(t *testing.T) {
				header := keyHeaders()
				header.Set("Cartesia-Version", version)
				conn := h.mustOpen("/agents/stream/a", header)
				sendJSON(t, conn, obj{"event": "start", "stream_id": "web-42",
					"config": obj{"input_format": "pcm_16000"}})
				readEvent(t, conn) // ack

				sendJSON(t, conn, tt.event)
				ev := readEvent(t, conn)
				if ev["event"] != "error" || ev["stream_id"] != "web-42" {
					t.Errorf("event %v, want an error event for the stream", ev)
				}
				wantErrorEvent(t, ev, version < structuredErrorsSince, 400, codeInvalidRequest,
					tt.fragment)

				sendJSON(t, conn, obj{"event": "dtmf", "dtmf": "5"})
				if ev := readEvent(t, conn); ev["dtmf"] != "5" {
					t.Errorf("after the error the call answers %v", ev)
				}
			})
		}
	}
}

func TestAgentCallMustBeginWithStart(t *testing.T) {
	tests := []struct {
		name      string
		first     any // obj, or []byte for a binary message
		wantError string
	}{
		{"media before start", obj{"event": "media_input", "media": obj{"payload": ""}}, ""},
		{"binary first", []byte{0, 1}, ""},
		{"unknown input format", obj{"event": "start", "config": obj{"input_format": "opus_48000"}},
			"input_format must be"},
		{"no config", obj{"event": "start"}, "input_format must be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := streamHarness(t, nil)
			conn := h.mustOpen("/agents/stream/a", nil)
			if b, ok := tt.first.([]byte); ok {
				_ = conn.Write(context.Background(), websocket.MessageBinary, b)
			} else {
				sendJSON(t, conn, tt.first)
			}
			if tt.wantError != "" {
				wantErrorEvent(t, readEvent(t, conn), false, 400, codeInvalidRequest,
					tt.wantError)
			}
			wantClose(t, conn, websocket.StatusPolicyViolation, notStartReason)
		})
	}
}

func TestAgentClosesAnIdleCall(t *testing.T) {
	h := streamHarness(t, func(c *Config) { c.AgentIdle = 500 * time.Millisecond })
	conn, _ := startCall(t, h, "pcm_16000", nil)

	// Each caller event restarts the countdown ...
	for range 4 {
		time.Sleep(200 * time.Millisecond)
		sendJSON(t, conn, obj{"event": "dtmf", "dtmf": "1"})
		readEvent(t, conn)
	}
	// ... and silence ends the call.
	wantClose(t, conn, websocket.StatusNormalClosure, "connection idle timeout")
}

func TestAgentHangsUpOnRequest(t *testing.T) {
	h := streamHarness(t, nil)
	conn, _ := startCall(t, h, "pcm_16000", nil)
	sendJSON(t, conn, obj{"event": "custom", "metadata": obj{"hangup": true}})
	wantClose(t, conn, websocket.StatusNormalClosure, "call ended by agent")
}

func TestAgentPacesItsReplies(t *testing.T) {
	const pace = 0.2
	h := streamHarness(t, func(c *Config) { c.Pace = pace })
	conn, _ := startCall(t, h, "pcm_16000", nil)

	say(t, conn, "Pace yourself.", "pcm_16000")
	start := time.Now()
	hear(t, conn, "pcm_16000")
	reply := tonecode.Duration("You said: Pace yourself.")
	// The last 100 ms frame is due (frames-1) * 100 ms * pace after the first.
	want := time.Duration(float64(reply.Truncate(chunkDuration)-chunkDuration) * pace * 0.8)
	if took := time.Since(start); took < want {
		t.Errorf("a %v reply arrived in %v; at pace %v it takes at least %v", reply, took,
			pace, want)
	}
}

func TestAgentUpgradeChecks(t *testing.T) {
	h := streamHarness(t, nil)
	agentToken := h.mint(`{"agent":true}`, 60)
	ttsToken := h.mint(`{"tts":true}`, 60)
	query := func(token, version string) string {
		return "?" + url.Values{"access_token": {token}, "cartesia_version": {version}}.Encode()
	}

	conn, _, err := h.openSocket("/agents/stream/agent_1"+query(agentToken, "2025-04-16"),
		http.Header{})
	if err != nil {
		t.Fatalf("agent token refused: %v", err)
	}
	sendJSON(t, conn, obj{"event": "start", "config": obj{"input_format": "pcm_44100"}})
	if ev := readEvent(t, conn); ev["event"] != "ack" {
		t.Errorf("event %v, want ack", ev)
	}

	_, resp, err := h.openSocket("/agents/stream/agent_1"+query(ttsToken, testVersion),
		http.Header{})
	wantRefused(t, resp, err, http.StatusForbidden, codeInsufficientGrant)

	for _, id := range []string{"bad.id", "sp%20ace", strings.Repeat("a", 129)} {
		_, resp, err := h.openSocket("/agents/stream/"+id, nil)
		wantRefused(t, resp, err, http.StatusNotFound, codeNotFound)
	}
	if _, _, err := h.openSocket("/agents/stream/"+strings.Repeat("a", 128), nil); err != nil {
		t.Errorf("a 128-character agent id was refused: %v", err)
	}
}
