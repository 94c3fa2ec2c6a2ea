package cartesia

import (
	"encoding/base64"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func TestDecodeTTSEventReadsEveryType(t *testing.T) {
	audio := []byte{0, 1, 2, 250}
	b64 := base64.StdEncoding.EncodeToString(audio)
	cases := []struct {
		name string
		raw  string
		want TTSEvent
	}{
		{"chunk", `{"type":"chunk","data":"` + b64 + `","done":false,"status_code":206,` +
			`"step_time":41.5,"context_id":"c1","flush_id":2}`,
			TTSEvent{Type: "chunk", ContextID: "c1", Audio: audio, StepTime: 41.5,
				HasStepTime: true, FlushID: 2}},
		{"chunk without step time", `{"type":"chunk","data":"` + b64 + `"}`,
			TTSEvent{Type: "chunk", Audio: audio}},
		{"timestamps", `{"type":"timestamps","context_id":"c1","word_timestamps":` +
			`{"words":["Hi","there"],"start":[0,0.2],"end":[0.1,0.5]}}`,
			TTSEvent{Type: "timestamps", ContextID: "c1", Words: []string{"Hi", "there"},
				Start: []float64{0, 0.2}, End: []float64{0.1, 0.5}}},
		{"flush_done", `{"type":"flush_done","context_id":"c1","flush_done":true,"flush_id":1}`,
			TTSEvent{Type: "flush_done", ContextID: "c1", FlushID: 1}},
		{"done", `{"type":"done","done":true,"context_id":"c1"}`,
			TTSEvent{Type: "done", ContextID: "c1"}},
		{"error, current shape", `{"type":"error","done":true,"status_code":400,` +
			`"error_code":"model_not_found","title":"Invalid model","message":"no such model",` +
			`"request_id":"r1","context_id":"c1"}`,
			TTSEvent{Type: "error", ContextID: "c1", Err: &APIError{StatusCode: 400,
				ErrorCode: "model_not_found", Title: "Invalid model", Message: "no such model",
				RequestID: "r1"}}},
		{"error, legacy shape", `{"type":"error","done":true,"status_code":400,` +
			`"error":"Invalid model: bad"}`,
			TTSEvent{Type: "error", Err: &APIError{StatusCode: 400,
				Message: "Invalid model: bad"}}},
		{"unknown type passes through", `{"type":"phoneme_timestamps","context_id":"c1"}`,
			TTSEvent{Type: "phoneme_timestamps", ContextID: "c1"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeTTSEvent([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}

			tc.want.Raw = json.RawMessage(tc.raw)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("event = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestDecodeTTSEventRejectsBrokenEvents(t *testing.T) {
	for _, raw := range []string{
		`not json`,
		`{"data":"AAAA"}`,
		`{"type":"chunk"}`,
		`{"type":"chunk","data":"%%%"}`,
		`{"type":"timestamps","word_timestamps":{"words":["a"],"start":[],"end":[1]}}`,
	} {
		if _, err := DecodeTTSEvent([]byte(raw)); err == nil {
			t.Errorf("DecodeTTSEvent(%s) succeeded, want an error", raw)
		}
	}
}

func TestTTSContextRepeatsBaseFieldsOnEveryMessage(t *testing.T) {
	base := `{"model_id":"sonic-3","voice":{"mode":"id","id":"v"},` +
		`"output_format":{"container":"raw","encoding":"pcm_s16le","sample_rate":16000},` +
		`"add_timestamps":true,"transcript":"ignored","continue":false,"context_id":"x"}`
	c, err := NewTTSContext("ctx-1", []byte(base))
	if err != nil {
		t.Fatal(err)
	}

	cases := []struct {
		name string
		msg  []byte
		want map[string]any
	}{
		{"push", c.Push("Hello, ", false), map[string]any{"transcript": "Hello, ",
			"continue": true}},
		{"push with flush", c.Push("", true), map[string]any{"transcript": "",
			"continue": true, "flush": true}},
		{"end", c.End("bye."), map[string]any{"transcript": "bye.", "continue": false}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var got map[string]any
			if err := json.Unmarshal(tc.msg, &got); err != nil {
				t.Fatal(err)
			}

			want := map[string]any{"model_id": "sonic-3", "context_id": "ctx-1",
				"voice": map[string]any{"mode": "id", "id": "v"},
				"output_format": map[string]any{"container": "raw", "encoding": "pcm_s16le",
					"sample_rate": float64(16000)}, "add_timestamps": true}
			for k, v := range tc.want {
				want[k] = v
			}
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("message = %v\nwant %v", got, want)
			}
		})
	}

	if got := string(c.Cancel()); got != `{"cancel":true,"context_id":"ctx-1"}` {
		t.Fatalf("cancel = %s", got)
	}
}

func TestNewTTSContextNeedsTheBaseFields(t *testing.T) {
	for _, base := range []string{`[]`, `null`, `{"model_id":"m","voice":"v"}`, `{`} {
		if _, err := NewTTSContext("c", []byte(base)); err == nil {
			t.Errorf("NewTTSContext(%s) succeeded, want an error", base)
		}
	}
	if _, err := NewTTSContext("", []byte(`{"model_id":"m","voice":"v","output_format":{}}`)); err == nil {
		t.Error("an empty context id was accepted")
	}
}

func ptr[T any](v T) *T { return &v }

func TestSTTQueryCarriesOnlyKnownParameters(t *testing.T) {
	cases := []struct {
		name    string
		opts    STTOptions
		want    string
		wantErr string
	}{
		{"required only", STTOptions{Model: "ink-whisper", Encoding: "pcm_s16le",
			SampleRate: 16000}, "encoding=pcm_s16le&model=ink-whisper&sample_rate=16000", ""},
		{"everything", STTOptions{Model: "ink-2", Encoding: "pcm_f32le", SampleRate: 48000,
			Language: "en", MinVolume: ptr(0.1), MaxSilence: ptr(1.5),
			Keyterms: []string{"Voxgate", "tone code"}},
			"encoding=pcm_f32le&keyterm=Voxgate&keyterm=tone+code&language=en" +
				"&max_silence_duration_secs=1.5&min_volume=0.1&model=ink-2&sample_rate=48000", ""},
		{"no model", STTOptions{Encoding: "pcm_s16le", SampleRate: 16000}, "", "model"},
		{"no rate", STTOptions{Model: "m", Encoding: "pcm_s16le"}, "", "sample_rate"},
		{"volume out of range", STTOptions{Model: "m", Encoding: "e", SampleRate: 8000,
			MinVolume: ptr(1.5)}, "", "min_volume"},
		{"too many keyterms", STTOptions{Model: "m", Encoding: "e", SampleRate: 8000,
			Keyterms: make([]string, 101)}, "", "keyterms"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := tc.opts.Query()

			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("error = %v, want one naming %q", err, tc.wantErr)
				}
				return
			}
			if err != nil || got != tc.want {
				t.Fatalf("query = %q, %v\nwant %q", got, err, tc.want)
			}
		})
	}
}

func TestTurnQueryAndConfig(t *testing.T) {
	q, err := TurnOptions{Model: "ink-2", Encoding: "pcm_s16le", SampleRate: 16000,
		TurnEndThreshold: ptr(0.3), TurnEndTimeoutMs: ptr(1200)}.Query()

	want := "encoding=pcm_s16le&model=ink-2&sample_rate=16000&turn_end_threshold=0.3" +
		"&turn_end_timeout_ms=1200"
	if err != nil || q != want {
		t.Fatalf("query = %q, %v\nwant %q", q, err, want)
	}

	msg, err := TurnConfig([]byte(`{"end_threshold":0.2}`))
	if err != nil || string(msg) != `{"turn":{"end_threshold":0.2},"type":"config"}` {
		t.Fatalf("config = %s, %v", msg, err)
	}
	if _, err := TurnConfig([]byte(`0.2`)); err == nil {
		t.Fatal("a config that is not an object was accepted")
	}
}

func TestDecodeSTTEvent(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want STTEvent
	}{
		{"final transcript", `{"type":"transcript","request_id":"r","text":"Book a table",` +
			`"is_final":true,"duration":1.5,"language":"en","words":[{"word":"Book",` +
			`"start":0.1,"end":0.3}]}`,
			STTEvent{Type: "transcript", RequestID: "r", Text: "Book a table", IsFinal: true,
				Duration: 1.5, HasDuration: true, Language: "en",
				Words: []Word{{"Book", 0.1, 0.3}}}},
		{"interim", `{"type":"transcript","text":"","is_final":false}`,
			STTEvent{Type: "transcript"}},
		{"turn update", `{"type":"turn.update","request_id":"r","transcript":"hello"}`,
			STTEvent{Type: "turn.update", RequestID: "r", Transcript: "hello",
				HasTranscript: true}},
		{"error", `{"type":"error","status_code":400,"error_code":"model_not_found",` +
			`"title":"Invalid model","message":"m"}`,
			STTEvent{Type: "error", Err: &APIError{StatusCode: 400,
				ErrorCode: "model_not_found", Title: "Invalid model", Message: "m"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeSTTEvent([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}

			tc.want.Raw = json.RawMessage(tc.raw)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("event = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestBatchFormFields(t *testing.T) {
	fields, query, err := BatchOptions{Model: "ink-whisper", Language: "en", Timestamps: true,
		Encoding: "pcm_s16le", SampleRate: 16000}.Form(false)

	wantFields := []Field{{"model", "ink-whisper"}, {"language", "en"},
		{"timestamp_granularities[]", "word"}}
	if err != nil || !reflect.DeepEqual(fields, wantFields) ||
		query != "encoding=pcm_s16le&sample_rate=16000" {
		t.Fatalf("Form = %v, %q, %v", fields, query, err)
	}

	if _, _, err := (BatchOptions{Model: "m", Encoding: "pcm_s16le"}).Form(true); err == nil {
		t.Fatal("the OpenAI route accepted an encoding")
	}
	if _, _, err := (BatchOptions{}).Form(false); err == nil {
		t.Fatal("a form without a model was accepted")
	}
}

func TestAgentMessagesFrameAudioAsBase64(t *testing.T) {
	audio := []byte{0x00, 0x01, 0xfe, 0xff}

	msg := AgentMediaMessage("s1", audio)

	var got struct {
		Event    string `json:"event"`
		StreamID string `json:"stream_id"`
		Media    struct {
			Payload string `json:"payload"`
		} `json:"media"`
	}
	if err := json.Unmarshal(msg, &got); err != nil {
		t.Fatal(err)
	}
	back, err := base64.StdEncoding.DecodeString(got.Media.Payload)
	if got.Event != "media_input" || got.StreamID != "s1" || err != nil ||
		!reflect.DeepEqual(back, audio) {
		t.Fatalf("media_input = %s", msg)
	}
}

func TestAgentStartMessage(t *testing.T) {
	msg, err := AgentStartMessage("s1", AgentStartOptions{InputFormat: "pcm_16000",
		VoiceID: "v1", Metadata: json.RawMessage(`{"from":"page"}`),
		Agent: json.RawMessage(`{"introduction":"Hi"}`)})

	want := `{"agent":{"introduction":"Hi"},"config":{"input_format":"pcm_16000",` +
		`"voice_id":"v1"},"event":"start","metadata":{"from":"page"},"stream_id":"s1"}`
	if err != nil || string(msg) != want {
		t.Fatalf("start = %s, %v\nwant %s", msg, err, want)
	}

	for _, o := range []AgentStartOptions{{InputFormat: "pcm_8000"}, {InputFormat: "pcm_16000",
		Metadata: json.RawMessage(`[1]`)}} {
		if _, err := AgentStartMessage("s1", o); err == nil {
			t.Errorf("start with %+v was accepted", o)
		}
	}
}

func TestAgentDTMFAndCustomMessages(t *testing.T) {
	for _, d := range []string{"0", "9", "*", "#"} {
		if _, err := AgentDTMFMessage("s", d); err != nil {
			t.Errorf("digit %q refused: %v", d, err)
		}
	}
	for _, d := range []string{"", "A", "12", "+"} {
		if _, err := AgentDTMFMessage("s", d); err == nil {
			t.Errorf("digit %q accepted", d)
		}
	}

	msg, err := AgentCustomMessage("s", []byte(`{"k":1}`))
	if err != nil || string(msg) != `{"event":"custom","metadata":{"k":1},"stream_id":"s"}` {
		t.Fatalf("custom = %s, %v", msg, err)
	}
}

func TestDecodeAgentEvent(t *testing.T) {
	audio := []byte{1, 2, 3}
	cases := []struct {
		name string
		raw  string
		want AgentEvent
	}{
		{"ack", `{"event":"ack","stream_id":"s","config":{"input_format":"pcm_16000"}}`,
			AgentEvent{Event: "ack", StreamID: "s",
				Config: json.RawMessage(`{"input_format":"pcm_16000"}`)}},
		{"media", `{"event":"media_output","stream_id":"s","media":{"payload":"` +
			base64.StdEncoding.EncodeToString(audio) + `"}}`,
			AgentEvent{Event: "media_output", StreamID: "s", Audio: audio}},
		{"clear", `{"event":"clear","stream_id":"s"}`, AgentEvent{Event: "clear",
			StreamID: "s"}},
		{"dtmf", `{"event":"dtmf","stream_id":"s","dtmf":"5"}`, AgentEvent{Event: "dtmf",
			StreamID: "s", Digit: "5"}},
		{"custom", `{"event":"custom","stream_id":"s","metadata":{"a":1}}`,
			AgentEvent{Event: "custom", StreamID: "s", Metadata: json.RawMessage(`{"a":1}`)}},
		{"error", `{"type":"error","done":true,"status_code":400,"message":"bad format"}`,
			AgentEvent{Event: "error", Err: &APIError{StatusCode: 400,
				Message: "bad format"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DecodeAgentEvent([]byte(tc.raw))
			if err != nil {
				t.Fatal(err)
			}

			tc.want.Raw = json.RawMessage(tc.raw)
			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("event = %+v\nwant %+v", got, tc.want)
			}
		})
	}

	for _, raw := range []string{`{}`, `{"event":"media_output"}`,
		`{"event":"media_output","media":{"payload":"!!"}}`} {
		if _, err := DecodeAgentEvent([]byte(raw)); err == nil {
			t.Errorf("DecodeAgentEvent(%s) succeeded", raw)
		}
	}
}

func TestCheckAgentID(t *testing.T) {
	for _, id := range []string{"agent_1", "A-b", strings.Repeat("a", 128)} {
		if err := CheckAgentID(id); err != nil {
			t.Errorf("%q refused: %v", id, err)
		}
	}
	for _, id := range []string{"", "../x", "a/b", "a b", strings.Repeat("a", 129)} {
		if err := CheckAgentID(id); err == nil {
			t.Errorf("%q accepted", id)
		}
	}
}
