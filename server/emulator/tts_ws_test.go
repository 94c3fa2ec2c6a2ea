package emulator

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"

	"github.com/voxgate/voxgate/server/sectest"
)

// streamHarness is newHarness with the Config edited first (pace, idle times).
func streamHarness(t *testing.T, edit func(*Config)) *harness {
	t.Helper()
	h := &harness{
		t:     t,
		clock: sectest.NewClock(time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)),
		logs:  &syncBuffer{},
	}
	cfg := Config{
		APIKeys: []string{testKey},
		Now:     h.clock.Now,
		Logger:  slog.New(slog.NewJSONHandler(h.logs, nil)),
	}
	if edit != nil {
		edit(&cfg)
	}
	emu, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.emu = emu
	h.srv = httptest.NewServer(emu) // listens on 127.0.0.1
	t.Cleanup(h.srv.Close)
	return h
}

// keyHeaders are the default WebSocket handshake headers: API key and current version.
func keyHeaders() http.Header {
	return http.Header{"Authorization": {"Bearer " + testKey}, "Cartesia-Version": {testVersion}}
}

// openSocket dials a WebSocket route of the harness; nil headers mean keyHeaders.
func (h *harness) openSocket(path string, header http.Header) (*websocket.Conn, *http.Response,
	error) {
	h.t.Helper()
	if header == nil {
		header = keyHeaders()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(h.srv.URL, "http") + path
	conn, resp, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: header})
	if err == nil {
		conn.SetReadLimit(1 << 22)
		h.t.Cleanup(func() { _ = conn.CloseNow() })
	}
	return conn, resp, err
}

// mustOpen is openSocket for handshakes that must succeed.
func (h *harness) mustOpen(path string, header http.Header) *websocket.Conn {
	h.t.Helper()
	conn, _, err := h.openSocket(path, header)
	if err != nil {
		h.t.Fatalf("dial %s: %v", path, err)
	}
	return conn
}

// sendJSON writes v as one text message.
func sendJSON(t *testing.T, conn *websocket.Conn, v any) {
	t.Helper()
	data, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, data); err != nil {
		t.Fatalf("write: %v", err)
	}
}

// readEvent reads one JSON message within 5 s.
func readEvent(t *testing.T, conn *websocket.Conn) obj {
	t.Helper()
	ev, err := tryReadEvent(conn, 5*time.Second)
	if err != nil {
		t.Fatalf("read: %v", err)
	}
	return ev
}

func tryReadEvent(conn *websocket.Conn, wait time.Duration) (obj, error) {
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	typ, data, err := conn.Read(ctx)
	if err != nil {
		return nil, err
	}
	if typ != websocket.MessageText {
		return nil, errors.New("binary message from the server")
	}
	var ev obj
	if err := json.Unmarshal(data, &ev); err != nil {
		return nil, err
	}
	return ev, nil
}

// wantClose reads until the server closes and checks its code and reason ("" accepts any).
func wantClose(t *testing.T, conn *websocket.Conn, code websocket.StatusCode, reason string) {
	t.Helper()
	for {
		_, err := tryReadEvent(conn, 5*time.Second)
		if err == nil {
			continue
		}
		var ce websocket.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("connection ended without a close frame: %v", err)
		}
		if ce.Code != code || (reason != "" && ce.Reason != reason) {
			t.Fatalf("closed with %d %q, want %d %q", ce.Code, ce.Reason, code, reason)
		}
		return
	}
}

// wsInput is a TTS WebSocket generation input with the test's base fields.
func wsInput(contextID, transcript string, changes obj) obj {
	in := obj{
		"context_id":    contextID,
		"model_id":      "sonic-3",
		"transcript":    transcript,
		"voice":         obj{"mode": "id", "id": testVoice},
		"output_format": obj{"container": "raw", "encoding": "pcm_s16le", "sample_rate": 16000},
		"language":      "en",
	}
	for k, v := range changes {
		if _, ok := v.(remove); ok {
			delete(in, k)
			continue
		}
		in[k] = v
	}
	return in
}

// contextLog is what one context received, in order.
type contextLog struct {
	events []obj
	audio  []byte
}

func (l *contextLog) types() []string {
	var out []string
	for _, ev := range l.events {
		out = append(out, ev["type"].(string))
	}
	return out
}

// text decodes the context's audio (pcm_s16le at rate) into its frames' joined texts.
func (l *contextLog) text(t *testing.T, rate int) string {
	t.Helper()
	samples, err := audio.Decode(audio.S16LE, l.audio)
	if err != nil {
		t.Fatal(err)
	}
	frames, err := tonecode.DecodeAll(samples, rate)
	if err != nil {
		t.Fatalf("decode context audio: %v", err)
	}
	var b strings.Builder
	for _, f := range frames {
		b.WriteString(f.Text)
	}
	return b.String()
}

// collectContexts reads events until every context in want has sent a terminal event
// (done or error) and returns them per context, plus the order of context ids as received.
func collectContexts(t *testing.T, conn *websocket.Conn, want ...string) (
	map[string]*contextLog, []string) {
	t.Helper()
	logs := map[string]*contextLog{}
	var order []string
	open := len(want)
	for open > 0 {
		ev := readEvent(t, conn)
		id, _ := ev["context_id"].(string)
		l := logs[id]
		if l == nil {
			l = &contextLog{}
			logs[id] = l
		}
		l.events = append(l.events, ev)
		order = append(order, id)
		if ev["type"] == "chunk" {
			data, err := base64.StdEncoding.DecodeString(ev["data"].(string))
			if err != nil {
				t.Fatalf("chunk data is not base64: %v", err)
			}
			l.audio = append(l.audio, data...)
		}
		if ev["done"] == true {
			open--
		}
	}
	return logs, order
}

func TestTTSWebSocketInterleavesContextsAndKeepsEachInOrder(t *testing.T) {
	// A little pacing keeps both contexts generating at once.
	h := streamHarness(t, func(c *Config) { c.Pace = 0.05 })
	conn := h.mustOpen("/tts/websocket", nil)

	cont := obj{"continue": true}
	sendJSON(t, conn, wsInput("a", "Good morning, ", cont))
	sendJSON(t, conn, wsInput("b", "Bonjour ", obj{"continue": true, "language": "fr"}))
	sendJSON(t, conn, wsInput("a", "how are you?", cont))
	sendJSON(t, conn, wsInput("b", "tout le monde", obj{"continue": true, "language": "fr"}))
	sendJSON(t, conn, wsInput("a", "", obj{"continue": false}))
	sendJSON(t, conn, wsInput("b", "", obj{"continue": false, "language": "fr"}))

	logs, order := collectContexts(t, conn, "a", "b")
	if got := logs["a"].text(t, 16000); got != "Good morning, how are you?" {
		t.Errorf("context a says %q", got)
	}
	if got := logs["b"].text(t, 16000); got != "Bonjour tout le monde" {
		t.Errorf("context b says %q", got)
	}
	for _, id := range []string{"a", "b"} {
		types := logs[id].types()
		if types[len(types)-1] != "done" || strings.Count(strings.Join(types, ","), "done") != 1 {
			t.Errorf("context %s events %v: want exactly one done, last", id, types)
		}
		for _, ev := range logs[id].events {
			if ev["status_code"] != float64(206) {
				t.Errorf("context %s %s has status_code %v, want 206", id, ev["type"],
					ev["status_code"])
			}
		}
	}

	// Interleaved: some event of b arrives between a's first and last events.
	first, last := strings.Index(strings.Join(order, ""), "a"),
		strings.LastIndex(strings.Join(order, ""), "a")
	if !strings.Contains(strings.Join(order, "")[first:last], "b") {
		t.Errorf("contexts were not interleaved: %s", strings.Join(order, ""))
	}
}

func TestTTSWebSocketFlushIDsAndTimestamps(t *testing.T) {
	h := streamHarness(t, nil)
	conn := h.mustOpen("/tts/websocket", nil)

	ts := obj{"continue": true, "add_timestamps": true}
	sendJSON(t, conn, wsInput("turn-7", "Hi there, ", ts))
	sendJSON(t, conn, wsInput("turn-7", "", obj{"continue": true, "flush": true,
		"add_timestamps": true}))
	sendJSON(t, conn, wsInput("turn-7", "how are you?", obj{"continue": true, "flush": true,
		"add_timestamps": true}))
	// The last input leaves out the fields it may inherit.
	sendJSON(t, conn, obj{"context_id": "turn-7", "transcript": "", "continue": false})

	logs, _ := collectContexts(t, conn, "turn-7")
	l := logs["turn-7"]
	if got := l.text(t, 16000); got != "Hi there, how are you?" {
		t.Errorf("audio says %q", got)
	}

	// Chunks and timestamps carry the flush id in force; flush_done closes each id.
	var flushes []float64
	current := float64(1)
	var words []string
	var starts, ends []float64
	for _, ev := range l.events {
		switch ev["type"] {
		case "chunk", "timestamps":
			if ev["flush_id"] != current {
				t.Errorf("%s with flush_id %v, want %v", ev["type"], ev["flush_id"], current)
			}
			if ev["type"] == "timestamps" {
				wt := ev["word_timestamps"].(map[string]any)
				for i, w := range wt["words"].([]any) {
					words = append(words, w.(string))
					starts = append(starts, wt["start"].([]any)[i].(float64))
					ends = append(ends, wt["end"].([]any)[i].(float64))
				}
			}
		case "flush_done":
			if ev["flush_done"] != true || ev["done"] != false {
				t.Errorf("flush_done event %v", ev)
			}
			flushes = append(flushes, ev["flush_id"].(float64))
			current++
		}
	}
	if len(flushes) != 2 || flushes[0] != 1 || flushes[1] != 2 {
		t.Errorf("flush ids %v, want [1 2]", flushes)
	}

	// Word timestamps run on across inputs: the second input's words follow the first's.
	if strings.Join(words, "|") != "Hi|there,|how|are|you?" {
		t.Fatalf("timestamp words %q", words)
	}
	total := tonecode.Duration("Hi there, ").Seconds() + tonecode.Duration("how are you?").Seconds()
	for i := range words {
		if starts[i] >= ends[i] || ends[i] > total+0.001 || (i > 0 && starts[i] < ends[i-1]) {
			t.Errorf("word %q at %.3f-%.3f: not increasing within %.3f s", words[i], starts[i],
				ends[i], total)
		}
	}
	if second := tonecode.Duration("Hi there, ").Seconds(); starts[2] < second {
		t.Errorf("second input's first word starts at %.3f, before the first input ended "+
			"(%.3f)", starts[2], second)
	}
}

func TestTTSWebSocketCancelDropsQueuedInputsAndEndsWithDone(t *testing.T) {
	// Paced, so the first input is still being spoken when the cancel arrives.
	h := streamHarness(t, func(c *Config) { c.Pace = 0.1 })
	conn := h.mustOpen("/tts/websocket", nil)

	cont := obj{"continue": true}
	sendJSON(t, conn, wsInput("c", "This sentence is being spoken. ", cont))
	sendJSON(t, conn, wsInput("c", "This one is queued. ", cont))
	sendJSON(t, conn, wsInput("c", "So is this one.", cont))
	first := readEvent(t, conn) // the first input has begun
	if first["type"] != "chunk" {
		t.Fatalf("first event %v, want a chunk", first)
	}
	sendJSON(t, conn, obj{"context_id": "c", "cancel": true})
	sendJSON(t, conn, obj{"context_id": "never-opened", "cancel": true})

	logs, _ := collectContexts(t, conn, "c")
	data, _ := base64.StdEncoding.DecodeString(first["data"].(string))
	logs["c"].audio = append(data, logs["c"].audio...)
	if got := logs["c"].text(t, 16000); got != "This sentence is being spoken. " {
		t.Errorf("after cancel the context said %q; want only the input in flight", got)
	}
	if _, ok := logs["never-opened"]; ok {
		t.Error("cancelling an unknown context produced events")
	}

	// The connection goes on, and the cancelled id may open a fresh context.
	sendJSON(t, conn, wsInput("c", "Again.", nil))
	logs, _ = collectContexts(t, conn, "c")
	if got := logs["c"].text(t, 16000); got != "Again." {
		t.Errorf("reused id says %q", got)
	}
}

func TestTTSWebSocketContextsExpireAfterTheirLastOutput(t *testing.T) {
	tests := []struct {
		name      string
		wait      time.Duration
		wantFlush float64 // the second flush's id: 2 on the same context, 1 on a fresh one
	}{
		{"within a second the context goes on", 500 * time.Millisecond, 2},
		{"after a second the id opens a fresh context", 1500 * time.Millisecond, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := streamHarness(t, nil)
			conn := h.mustOpen("/tts/websocket", nil)
			flush := obj{"continue": true, "flush": true}

			sendJSON(t, conn, wsInput("x", "One.", flush))
			for ev := readEvent(t, conn); ev["type"] != "flush_done"; ev = readEvent(t, conn) {
			}
			h.clock.Advance(tt.wait)
			sendJSON(t, conn, wsInput("x", "Two.", flush))
			ev := readEvent(t, conn)
			for ; ev["type"] != "flush_done"; ev = readEvent(t, conn) {
			}
			if ev["flush_id"] != tt.wantFlush {
				t.Errorf("second flush_id %v, want %v", ev["flush_id"], tt.wantFlush)
			}
		})
	}
}

// ttsWSErrorCases are invalid TTS WebSocket messages and the error each must produce.
var ttsWSErrorCases = []struct {
	name      string
	message   any // obj for JSON, string for raw text, []byte for a binary message
	contextID string
	status    float64
	code      string
	fragment  string
}{
	{"not JSON", "{", "", 400, codeInvalidRequest, "not valid JSON"},
	{"binary message", []byte{1, 2, 3}, "", 400, codeInvalidRequest, "binary messages"},
	{"unknown model", wsInput("m", "Hi", obj{"model_id": "gpt-4o"}), "m", 400,
		codeModelNotFound, "not a known model"},
	{"wav container", wsInput("w", "Hi", obj{"output_format": format("wav", "pcm_s16le", 8000)}),
		"w", 400, codeInvalidRequest, `must be "raw"`},
	{"buffer delay out of range", wsInput("d", "Hi", obj{"max_buffer_delay_ms": 6000}), "d", 400,
		codeInvalidRequest, "max_buffer_delay_ms"},
	{"fault voice", wsInput("f", "Hello, fault.", obj{"voice": FaultVoiceID}), "f", 500,
		codeEmulatedFault, "fault voice"},
}

func TestTTSWebSocketErrorsAreEventsInTheVersionShape(t *testing.T) {
	for _, version := range []string{"2024-11-13", testVersion} {
		legacy := version < structuredErrorsSince
		for _, tt := range ttsWSErrorCases {
			t.Run(version+"/"+tt.name, func(t *testing.T) {
				h := streamHarness(t, nil)
				header := keyHeaders()
				header.Set("Cartesia-Version", version)
				conn := h.mustOpen("/tts/websocket", header)

				ctx := context.Background()
				switch m := tt.message.(type) {
				case string:
					_ = conn.Write(ctx, websocket.MessageText, []byte(m))
				case []byte:
					_ = conn.Write(ctx, websocket.MessageBinary, m)
				default:
					sendJSON(t, conn, m)
				}

				ev := readEvent(t, conn)
				for ev["type"] == "chunk" { // the fault voice speaks its first chunk
					ev = readEvent(t, conn)
				}
				wantErrorEvent(t, ev, legacy, tt.status, tt.code, tt.fragment)
				if got, _ := ev["context_id"].(string); got != tt.contextID {
					t.Errorf("context_id %q, want %q", got, tt.contextID)
				}

				// The connection survives the error.
				sendJSON(t, conn, wsInput("ok", "Fine.", nil))
				logs, _ := collectContexts(t, conn, "ok")
				if got := logs["ok"].text(t, 16000); got != "Fine." {
					t.Errorf("after the error the connection says %q", got)
				}
			})
		}
	}
}

// wantErrorEvent checks an error event: done:true, status, and the version's shape.
func wantErrorEvent(t *testing.T, ev obj, legacy bool, status float64, code, fragment string) {
	t.Helper()
	if ev["type"] != "error" || ev["done"] != true || ev["status_code"] != status {
		t.Fatalf("event %v: want type error, done true, status_code %v", ev, status)
	}
	if legacy {
		msg, _ := ev["error"].(string)
		if !strings.Contains(msg, ": ") || !strings.Contains(msg, fragment) {
			t.Errorf("legacy error %q: want \"Title: message\" mentioning %q", msg, fragment)
		}
		if _, ok := ev["error_code"]; ok {
			t.Errorf("legacy error event carries error_code: %v", ev)
		}
		return
	}
	if ev["error_code"] != code || ev["title"] == "" {
		t.Errorf("error_code %v title %v, want %q and a title", ev["error_code"], ev["title"],
			code)
	}
	if msg, _ := ev["message"].(string); !strings.Contains(msg, fragment) {
		t.Errorf("message %q does not mention %q", msg, fragment)
	}
	if id, _ := ev["request_id"].(string); !uuidV4.MatchString(id) {
		t.Errorf("request_id %q is not a UUID", id)
	}
}

func TestTTSWebSocketContinuationMustRepeatTheContextFields(t *testing.T) {
	h := streamHarness(t, nil)
	conn := h.mustOpen("/tts/websocket", nil)

	sendJSON(t, conn, wsInput("k", "First part. ", obj{"continue": true}))
	sendJSON(t, conn, wsInput("k", "Second part.", obj{"output_format": format("raw",
		"pcm_s16le", 24000)}))

	logs, _ := collectContexts(t, conn, "k")
	types := logs["k"].types()
	last := logs["k"].events[len(types)-1]
	wantErrorEvent(t, last, false, 400, codeInvalidRequest, "must repeat")
	for _, typ := range types[:len(types)-1] {
		if typ != "chunk" {
			t.Errorf("events before the error: %v; want only the first input's chunks", types)
		}
	}
}

func TestTTSWebSocketClosesWhenIdle(t *testing.T) {
	h := streamHarness(t, func(c *Config) { c.TTSIdle = 500 * time.Millisecond })
	conn := h.mustOpen("/tts/websocket", nil)

	// Activity keeps it open past the idle time ...
	for range 4 {
		time.Sleep(200 * time.Millisecond)
		sendJSON(t, conn, wsInput("i", "", obj{"continue": true}))
	}
	// ... and silence closes it.
	start := time.Now()
	wantClose(t, conn, websocket.StatusNormalClosure, "connection idle timeout")
	if waited := time.Since(start); waited < 300*time.Millisecond {
		t.Errorf("closed %v after the last message; the idle time is 500ms", waited)
	}
}

func TestTTSWebSocketRejectsMessagesOverTheReadLimit(t *testing.T) {
	h := streamHarness(t, nil)
	conn := h.mustOpen("/tts/websocket", nil)

	sendJSON(t, conn, wsInput("big", strings.Repeat("a", maxTTSBody), nil))
	wantClose(t, conn, websocket.StatusMessageTooBig, "")
}

func TestTTSWebSocketCredentialsAtTheUpgrade(t *testing.T) {
	h := streamHarness(t, nil)
	token := h.mint(`{"tts":true}`, 60)
	sttOnly := h.mint(`{"stt":true}`, 60)
	expired := h.mint(`{"tts":true}`, 60)
	other := streamHarness(t, nil).mint(`{"tts":true}`, 60) // signed by another emulator

	q := func(kv ...string) string {
		v := url.Values{}
		for i := 0; i < len(kv); i += 2 {
			v.Set(kv[i], kv[i+1])
		}
		return "?" + v.Encode()
	}
	versionOnly := http.Header{"Cartesia-Version": {testVersion}}
	tests := []struct {
		name   string
		query  string
		header http.Header
		status int    // 0: the upgrade succeeds
		code   string // error_code of a refused upgrade
	}{
		{"API key in Authorization", "", nil, 0, ""},
		{"API key in X-API-Key", "", http.Header{"X-API-Key": {testKey},
			"Cartesia-Version": {testVersion}}, 0, ""},
		{"API key in the api_key query", q("api_key", testKey), versionOnly, 0, ""},
		{"token in Authorization", "", http.Header{"Authorization": {"Bearer " + token},
			"Cartesia-Version": {testVersion}}, 0, ""},
		{"token and version in the query", q("access_token", token, "cartesia_version",
			testVersion), http.Header{}, 0, ""},
		{"token in the api_key query", q("api_key", token), versionOnly, 401, codeUnauthorized},
		{"no credentials", "", versionOnly, 401, codeUnauthorized},
		{"foreign token", q("access_token", other), versionOnly, 401, codeUnauthorized},
		{"token without the tts grant", q("access_token", sttOnly), versionOnly, 403,
			codeInsufficientGrant},
		{"no version", q("access_token", token), http.Header{}, 400, codeVersionRequired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			conn, resp, err := h.openSocket("/tts/websocket"+tt.query, tt.header)
			if tt.status == 0 {
				if err != nil {
					t.Fatalf("upgrade refused: %v", err)
				}
				sendJSON(t, conn, wsInput("auth", "Ok.", nil))
				collectContexts(t, conn, "auth")
				return
			}
			wantRefused(t, resp, err, tt.status, tt.code)
		})
	}

	t.Run("expired token", func(t *testing.T) {
		h.clock.Advance(61 * time.Second)
		_, resp, err := h.openSocket("/tts/websocket"+q("access_token", expired), versionOnly)
		wantRefused(t, resp, err, 401, codeTokenExpired)
	})

	t.Run("the query never reaches the log", func(t *testing.T) {
		if logs := h.logs.String(); strings.Contains(logs, token) ||
			strings.Contains(logs, testKey) || strings.Contains(logs, "access_token=") {
			t.Errorf("logs hold a credential or a query: %s", logs)
		}
	})
}

// wantRefused checks a refused WebSocket upgrade: status and error code in the JSON body.
func wantRefused(t *testing.T, resp *http.Response, err error, status int, code string) {
	t.Helper()
	if err == nil {
		t.Fatal("the upgrade succeeded")
	}
	if resp == nil || resp.StatusCode != status {
		t.Fatalf("response %v, want status %d (err %v)", resp, status, err)
	}
	body, _ := io.ReadAll(resp.Body)
	var e errorBody
	if jerr := json.Unmarshal(body, &e); jerr != nil || e.ErrorCode != code {
		t.Errorf("body %s, want error_code %q", body, code)
	}
}

func TestTTSWebSocketWithoutUpgradeIs426(t *testing.T) {
	h := streamHarness(t, nil)
	r := h.do(request{method: http.MethodGet, path: "/tts/websocket",
		headers: map[string]string{"X-API-Key": testKey, "Cartesia-Version": testVersion}})
	r.wantError(t, http.StatusUpgradeRequired, codeInvalidRequest, "WebSocket")
}

func TestQueryCredentialsCountOnlyOnWebSocketUpgrades(t *testing.T) {
	h := streamHarness(t, nil)
	// A plain request never reads the query: a key pasted into a URL is refused.
	h.do(request{path: "/tts/sse?api_key=" + testKey,
		headers: map[string]string{"Cartesia-Version": testVersion}, body: sseBody("Hi", nil)}).
		wantError(t, http.StatusUnauthorized, codeUnauthorized, "no credentials")
	// A malformed Authorization header is refused even when the query holds a good key.
	_, resp, err := h.openSocket("/tts/websocket?api_key="+testKey, http.Header{
		"Authorization": {"Basic abc"}, "Cartesia-Version": {testVersion}})
	wantRefused(t, resp, err, http.StatusUnauthorized, codeUnauthorized)
}
