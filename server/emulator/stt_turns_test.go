package emulator

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/tonecode"
)

// sttTurnsPath is a valid turns URL for pcm_s16le at rate, with extra query appended.
func sttTurnsPath(rate int, extra string) string {
	q := url.Values{"model": {"ink-2"}, "encoding": {"pcm_s16le"}, "sample_rate": {itoa(rate)}}
	return "/stt/turns/websocket?" + q.Encode() + extra
}

// sttTurnLog renders turn events as "type(transcript)", the transcript only where set.
func sttTurnLog(events []obj) string {
	var parts []string
	for _, ev := range events {
		s := ev["type"].(string)
		if tr, ok := ev["transcript"].(string); ok && tr != "" {
			s += "(" + tr + ")"
		}
		parts = append(parts, s)
	}
	return strings.Join(parts, " ")
}

// sttTurnsSession opens a turns socket, checks connected, streams clip in 100 ms chunks,
// sends close and returns every event up to the server's close 1000.
func sttTurnsSession(t *testing.T, h *harness, rate int, clip []float32) []obj {
	t.Helper()
	conn := h.mustOpen(sttTurnsPath(rate, ""), nil)
	if ev := readEvent(t, conn); ev["type"] != "connected" || ev["request_id"] == "" {
		t.Fatalf("first event %v, want connected", ev)
	}
	sttSendAudio(t, conn, sttEncode(t, "pcm_s16le", clip), sttChunk("pcm_s16le", rate))
	sendJSON(t, conn, obj{"type": "close"})

	var events []obj
	for {
		ev, err := tryReadEvent(conn, 5*time.Second)
		if err != nil {
			if code := websocket.CloseStatus(err); code != websocket.StatusNormalClosure {
				t.Fatalf("stream ended with %v, want close 1000", err)
			}
			return events
		}
		events = append(events, ev)
	}
}

func TestSTTTurnsFollowTheSilenceBetweenUtterances(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 16000
	tests := []struct {
		pause time.Duration
		want  string
	}{
		{200 * time.Millisecond, "turn.start turn.update(One.) turn.update(One. Two.) " +
			"turn.eager_end(One. Two.) turn.end(One. Two.)"},
		{500 * time.Millisecond, "turn.start turn.update(One.) turn.eager_end(One.) " +
			"turn.resume(One.) turn.update(One. Two.) turn.eager_end(One. Two.) " +
			"turn.end(One. Two.)"},
		{time.Second, "turn.start turn.update(One.) turn.eager_end(One.) turn.end(One.) " +
			"turn.start turn.update(Two.) turn.eager_end(Two.) turn.end(Two.)"},
	}
	for _, tt := range tests {
		clip := sttClip(sttSilence(200*time.Millisecond, rate), tonecode.Encode("One.", rate),
			sttSilence(tt.pause, rate), tonecode.Encode("Two.", rate),
			sttSilence(time.Second, rate))
		if got := sttTurnLog(sttTurnsSession(t, h, rate, clip)); got != tt.want {
			t.Errorf("pause %v:\n got %s\nwant %s", tt.pause, got, tt.want)
		}
	}
}

func TestSTTTurnsCloseEndsTheOpenTurn(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 24000
	clip := tonecode.Encode("Cut short, but whole.", rate)
	got := sttTurnLog(sttTurnsSession(t, h, rate, clip))
	want := "turn.start turn.update(Cut short, but whole.) turn.end(Cut short, but whole.)"
	if got != want {
		t.Errorf("got %s\nwant %s", got, want)
	}
}

func TestSTTTurnsReportNoiseHonestly(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 16000
	clip := sttClip(sttNoise(400*time.Millisecond, rate, 0.1), sttSilence(time.Second, rate))
	events := sttTurnsSession(t, h, rate, clip)
	if got := sttTurnLog(events); got != "turn.start turn.eager_end turn.end" {
		t.Fatalf("events %s", got)
	}
	end := events[len(events)-1]
	note, _ := end["emulator"].(map[string]any)
	if end["transcript"] != "" || note == nil || len(note["speech_segments"].([]any)) != 1 {
		t.Errorf("turn.end %v, want an empty transcript and one speech segment", end)
	}
}

func TestSTTTurnsConfigMessages(t *testing.T) {
	h := streamHarness(t, nil)

	conn := h.mustOpen(sttTurnsPath(16000, ""), nil)
	readEvent(t, conn) // connected
	sendJSON(t, conn, obj{"type": "config", "turn": obj{"start_threshold": 0.6,
		"eager_end_threshold": 0.5, "end_threshold": 0.1, "end_timeout_ms": 1000}})
	sendJSON(t, conn, obj{"type": "close"})
	wantClose(t, conn, websocket.StatusNormalClosure, "")

	bad := []struct {
		name     string
		msg      string
		fragment string
	}{
		{"end_threshold out of range", `{"type":"config","turn":{"end_threshold":0.9}}`,
			"turn.end_threshold"},
		{"fractional timeout", `{"type":"config","turn":{"end_timeout_ms":700.5}}`,
			"integer"},
		{"config without turn", `{"type":"config"}`, "turn"},
		{"unknown type", `{"type":"finalize"}`, "finalize"},
		{"bare close", `close`, "JSON"},
	}
	for _, tt := range bad {
		conn := h.mustOpen(sttTurnsPath(16000, ""), nil)
		readEvent(t, conn)
		sttSendText(t, conn, tt.msg)
		ev := readEvent(t, conn)
		t.Run(tt.name, func(t *testing.T) {
			wantErrorEvent(t, ev, false, 400, codeInvalidRequest, tt.fragment)
		})
		wantClose(t, conn, websocket.StatusNormalClosure, codeInvalidRequest)
	}
}

func TestSTTTurnsBadQueryIsAnErrorEvent(t *testing.T) {
	h := streamHarness(t, nil)
	tests := []struct {
		name, path, code, fragment string
	}{
		{"whisper cannot detect turns",
			strings.Replace(sttTurnsPath(16000, ""), "ink-2", "ink-whisper", 1),
			codeModelNotFound, "ink-2"},
		{"timeout below range", sttTurnsPath(16000, "&turn_end_timeout_ms=100"),
			codeInvalidRequest, "turn_end_timeout_ms"},
		{"threshold not a number", sttTurnsPath(16000, "&turn_start_threshold=high"),
			codeInvalidRequest, "turn_start_threshold"},
		{"not English", sttTurnsPath(16000, "&language=fr"), codeInvalidRequest, "English"},
		{"no encoding", strings.Replace(sttTurnsPath(16000, ""), "encoding=pcm_s16le&", "", 1),
			codeInvalidRequest, "encoding"},
	}
	for _, tt := range tests {
		conn := h.mustOpen(tt.path, nil)
		ev := readEvent(t, conn)
		t.Run(tt.name, func(t *testing.T) { wantErrorEvent(t, ev, false, 400, tt.code, tt.fragment) })
		wantClose(t, conn, websocket.StatusNormalClosure, tt.code)
	}

	// Valid thresholds are accepted.
	conn := h.mustOpen(sttTurnsPath(16000, "&turn_start_threshold=0.7&turn_eager_end_threshold=0.3"+
		"&turn_end_threshold=0.05&turn_end_timeout_ms=11200&keyterm=Voxgate"), nil)
	if ev := readEvent(t, conn); ev["type"] != "connected" {
		t.Errorf("first event %v", ev)
	}
}

func TestSTTTurnsNeedTheSTTGrant(t *testing.T) {
	h := streamHarness(t, nil)
	version := http.Header{"Cartesia-Version": {testVersion}}

	conn := h.mustOpen(sttTurnsPath(16000, "&access_token="+h.mint(`{"stt":true}`, 60)), version)
	if ev := readEvent(t, conn); ev["type"] != "connected" {
		t.Errorf("first event %v", ev)
	}

	_, resp, err := h.openSocket(sttTurnsPath(16000, "&access_token="+h.mint(`{"tts":true}`, 60)),
		version)
	wantRefused(t, resp, err, http.StatusForbidden, codeInsufficientGrant)
}

func TestSTTTurnsCloseWhenIdle(t *testing.T) {
	h := streamHarness(t, func(c *Config) { c.STTIdle = 50 * time.Millisecond })
	conn := h.mustOpen(sttTurnsPath(16000, ""), nil)
	readEvent(t, conn)
	wantClose(t, conn, websocket.StatusNormalClosure, idleReason)
}
