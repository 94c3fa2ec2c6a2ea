package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/wasm/cartesia"
)

// fuzzNow is the fixed emulator clock of the fuzz targets.
var fuzzNow = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// knownCodes are every error_code the emulator may answer.
var knownCodes = []string{codeVersionRequired, codeInvalidVersion, codeInvalidRequest,
	codeModelNotFound, codeUnsupported, codeUnauthorized, codeTokenExpired, codeAPIKeyRequired,
	codeInsufficientGrant, codeNotFound, codeMethodNotAllowed, codeTooLarge, codeInternal,
	codeEmulatedFault, "concurrency_limited"}

func newFuzzEmulator(f *testing.F) *Emulator {
	f.Helper()
	e, err := New(Config{APIKeys: []string{testKey}, Now: func() time.Time { return fuzzNow }})
	if err != nil {
		f.Fatal(err)
	}
	return e
}

// checkErrorAnswer insists on the emulator's structured error: a 4xx with a known code,
// a title, and the request id of the header.
func checkErrorAnswer(t *testing.T, rec *httptest.ResponseRecorder) errorBody {
	t.Helper()
	var e errorBody
	if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil {
		t.Fatalf("status %d with a body that is not the error shape: %q", rec.Code, rec.Body)
	}
	if rec.Code < 400 || rec.Code >= 500 || !slices.Contains(knownCodes, e.ErrorCode) ||
		e.Title == "" || e.RequestID != rec.Header().Get("Cartesia-Request-Id") {
		t.Fatalf("error answer %d %+v", rec.Code, e)
	}
	return e
}

// FuzzAccessTokenBody: whatever body POST /access-token gets, it answers either a token
// whose claims are exactly the grants and lifetime the body asked for, or a 4xx error
// in Cartesia's shape. A token is never minted for an unknown grant, no grant, or a
// lifetime outside 1 to 3600 s.
func FuzzAccessTokenBody(f *testing.F) {
	for _, s := range []string{
		`{"grants":{"tts":true},"expires_in":60}`,
		`{"grants":{"tts":true,"stt":false,"agent":null},"expires_in":3600}`,
		`{"grants":{"stt":true,"agent":true},"expires_in":1,"extra":[1,2]}`,
		`{"grants":{"tts":true},"expires_in":3601}`,
		`{"grants":{"tts":true},"expires_in":6e1}`,
		`{"grants":{"tts":true},"expires_in":"60"}`,
		`{"grants":{"admin":true},"expires_in":60}`,
		`{"grants":{"tts":true,"tts":false},"expires_in":60}`,
		`{"grants":{},"expires_in":60}`,
		`{"grants":{"tts":1},"expires_in":60}`,
		`{"grants":{"tts":true},"expires_in":99999999999999999999}`,
		`[]`, `null`, ``, `{"grants":{"tts":true}} {}`,
	} {
		f.Add([]byte(s))
	}

	e := newFuzzEmulator(f)
	f.Fuzz(func(t *testing.T, body []byte) {
		r := httptest.NewRequest(http.MethodPost, "/access-token", bytes.NewReader(body))
		r.Header.Set("X-API-Key", testKey)
		r.Header.Set("Cartesia-Version", testVersion)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, r)

		if rec.Code != http.StatusOK {
			checkErrorAnswer(t, rec)
			return
		}

		// The body was accepted: read what it asked for, independently.
		var asked struct {
			Grants    map[string]*bool `json:"grants"`
			ExpiresIn json.Number      `json:"expires_in"`
		}
		dec := json.NewDecoder(bytes.NewReader(body))
		dec.UseNumber()
		if err := dec.Decode(&asked); err != nil {
			t.Fatalf("minted a token for %q, which does not decode: %v", body, err)
		}
		ttl, err := asked.ExpiresIn.Int64()
		if err != nil || ttl < 1 || ttl > maxTokenTTL || strings.ContainsAny(string(
			asked.ExpiresIn), ".eE") {
			t.Fatalf("minted a token for expires_in %q", asked.ExpiresIn)
		}
		want := grants{}
		for name, v := range asked.Grants {
			switch name {
			case grantTTS:
				want.TTS = v
			case grantSTT:
				want.STT = v
			case grantAgent:
				want.Agent = v
			default:
				t.Fatalf("minted a token for unknown grant %q", name)
			}
		}

		var out struct{ Token string }
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatal(err)
		}
		c, err := e.tokens.verify(out.Token, fuzzNow)
		if err != nil {
			t.Fatalf("the minted token does not verify: %v", err)
		}
		for _, g := range []string{grantTTS, grantSTT, grantAgent} {
			if c.Grants.allows(g) != want.allows(g) {
				t.Fatalf("body %q: token grants %s, asked %s", body, c.Grants, want)
			}
		}
		if c.EXP-c.IAT != ttl || c.Grants.String() == "" {
			t.Fatalf("body %q: token lives %d s with grants %q", body, c.EXP-c.IAT, c.Grants)
		}
	})
}

// FuzzTokenVerify: the only strings verify accepts are tokens this emulator minted.
func FuzzTokenVerify(f *testing.F) {
	e := newFuzzEmulator(f)
	tts := true
	minted := map[string]bool{}
	for _, ttl := range []time.Duration{time.Minute, time.Second} {
		tok, err := e.tokens.mint(grants{TTS: &tts}, fuzzNow, ttl)
		if err != nil {
			f.Fatal(err)
		}
		minted[tok] = true
		f.Add(tok)
		f.Add(tok + "=")
		f.Add(strings.Replace(tok, ".", "..", 1))
	}
	f.Add("eyJhbGciOiJub25lIn0.eyJpc3MiOiJodHRwczovL2FwaS5jYXJ0ZXNpYS5haSJ9.")
	f.Add("a.b.c")

	f.Fuzz(func(t *testing.T, tok string) {
		c, err := e.tokens.verify(tok, fuzzNow)
		switch {
		case err == nil && !minted[tok]:
			t.Fatalf("verify accepted %q, which it never minted (claims %+v)", tok, c)
		case err != nil && !errors.Is(err, errTokenInvalid) && !errors.Is(err, errTokenExpired):
			t.Fatalf("verify failed with untyped %v", err)
		}
	})
}

// FuzzTTSRequest: any JSON body either fails with a 400 naming a field, or yields a TTS
// request every part of which the generator can use.
func FuzzTTSRequest(f *testing.F) {
	f.Add([]byte(ttsBody("Hello there.", "raw", "pcm_s16le", 24000)))
	f.Add([]byte(ttsBody("", "wav", "pcm_f32le", 48000)))
	f.Add([]byte(ttsBody("x", "mp3", "pcm_s16le", 24000)))
	f.Add([]byte(`{"model_id":"sonic-3","transcript":"a","voice":"6ccbfb76-1fc6-48f7-b71d-` +
		`91ac6298247b","output_format":{"container":"raw","encoding":"pcm_mulaw",` +
		`"sample_rate":8000},"locale":"zh-Hant-TW","generation_config":{"volume":2,` +
		`"speed":0.6},"add_timestamps":true,"context_id":"c"}`))
	f.Add([]byte(`{"model_id":"sonic","transcript":"a","voice":{"mode":"embedding"},` +
		`"output_format":{"sample_rate":8000.0}}`))
	f.Add([]byte(`{"a":{"b":1,"b":2}}`))

	f.Fuzz(func(t *testing.T, body []byte) {
		req, perr := parseObject(body)
		if perr != nil {
			checkAPIError(t, perr)
			return
		}
		tr, perr := parseTTS(req)
		if perr != nil {
			checkAPIError(t, perr)
			return
		}
		switch {
		case !strings.HasPrefix(tr.ModelID, "sonic"),
			utf8.RuneCountInString(tr.Transcript) > maxTranscript,
			!uuidPattern.MatchString(tr.VoiceID),
			tr.Container != "raw" && tr.Container != "wav",
			!tr.Encoding.Valid(),
			!slices.Contains(sampleRates, int64(tr.SampleRate)),
			tr.Language != "" && tr.Locale != "",
			tr.Volume < 0.5 || tr.Volume > 2:
			t.Fatalf("accepted an unusable request %+v from %q", tr, body)
		}
		if _, err := audio.WAVHeader(tr.Encoding, tr.SampleRate, 1); err != nil {
			t.Fatalf("accepted format has no WAV header: %v", err)
		}

		opts, perr := parseStreamOptions(req, tr)
		if perr != nil {
			checkAPIError(t, perr)
			return
		}
		if tr.Container != "raw" || len(opts.contextID) > 256 {
			t.Fatalf("stream options %+v accepted for %+v", opts, tr)
		}
	})
}

// checkAPIError is checkErrorAnswer for an error not yet written.
func checkAPIError(t *testing.T, e *apiError) {
	t.Helper()
	if e.status < 400 || e.status >= 500 || !slices.Contains(knownCodes, e.code) ||
		e.title == "" || e.message == "" {
		t.Fatalf("parser error %+v", e)
	}
}

// FuzzSTTQuery: any query string on the STT WebSockets either fails with a 400 or gives
// parameters the listener can run with.
func FuzzSTTQuery(f *testing.F) {
	for _, q := range []string{
		"model=ink-whisper&encoding=pcm_s16le&sample_rate=16000",
		"model=ink-2&encoding=pcm_f16le&sample_rate=8000&language=en&min_volume=0&" +
			"max_silence_duration_secs=60&keyterm=a&keyterm=b",
		"model=ink-2-x&encoding=pcm_alaw&sample_rate=192000&turn_end_timeout_ms=640&" +
			"turn_start_threshold=0.9&turn_eager_end_threshold=0.3&turn_end_threshold=0.05",
		"model=ink-whisper&encoding=pcm_s32le&sample_rate=7999",
		"model=ink-whisper&encoding=pcm_mulaw&sample_rate=16000&max_silence_duration_secs=1e-300",
		"model=ink-whisper&encoding=pcm_mulaw&sample_rate=16000&min_volume=NaN",
		"model=ink-2&encoding=pcm_s16le&sample_rate=16000&turn_end_timeout_ms=700.5",
		"encoding=pcm_s16le", "sample_rate=%zz", "",
	} {
		f.Add(q)
	}

	f.Fuzz(func(t *testing.T, raw string) {
		q, _ := url.ParseQuery(raw) // what the handlers see: r.URL.Query() drops bad pairs

		enc, rate, perr := sttAudioParams(q, false)
		if perr != nil {
			checkAPIError(t, perr)
		} else if enc != "" && (sttEncodings[enc] == 0 || rate < sttMinRate || rate > sttMaxRate) {
			t.Fatalf("batch audio params %q at %d Hz accepted", enc, rate)
		}

		for i, parse := range []func(url.Values) (*sttParams, *apiError){parseSTTStream,
			parseSTTTurns} {
			p, perr := parse(q)
			if perr != nil {
				checkAPIError(t, perr)
				continue
			}
			switch {
			case !strings.HasPrefix(p.Model, "ink-"),
				sttEncodings[p.Encoding] == 0,
				p.SampleRate < sttMinRate || p.SampleRate > sttMaxRate,
				!sttLanguagePattern.MatchString(p.Language),
				!(p.MinVolume >= 0 && p.MinVolume <= 1),
				p.MaxSilence < 0 || p.MaxSilence > time.Minute,
				len(p.Keyterms) > sttMaxKeyterms:
				t.Fatalf("query %q accepted as %+v", raw, p)
			}
			if i == 0 && p.MaxSilence == 0 && q.Has("max_silence_duration_secs") {
				t.Fatalf("query %q: max_silence_duration_secs %q became no silence at all",
					raw, q.Get("max_silence_duration_secs"))
			}
		}
	})
}

// FuzzSTTUpload: any multipart upload to POST /stt is answered with a transcript or a
// 4xx error in Cartesia's shape, within the upload cap, without a panic: WAV parsing,
// raw decoding and the listener all see the file.
func FuzzSTTUpload(f *testing.F) {
	tone := make([]float32, 800)
	for i := range tone {
		tone[i] = float32(i%40)/40 - 0.5
	}
	for _, e := range audio.Encodings {
		wav, err := audio.EncodeWAV(e, 8000, tone)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(wav, "ink-whisper", "en", "", "", true)
	}
	f.Add(bytes.Repeat([]byte{0, 0x80}, 400), "ink-whisper", "", "pcm_s16le", "8000", false)
	f.Add([]byte{0x00, 0x00, 0xc0, 0x7f, 0, 0, 0x80, 0x7f}, "ink-2", "de", "pcm_f32le",
		"16000", false)
	f.Add([]byte("ID3 not an mp3"), "ink-whisper", "", "", "", false)
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEfmt "), "whisper", "english", "pcm_s16le", "1", true)

	e := newFuzzEmulator(f)
	f.Fuzz(func(t *testing.T, file []byte, model, language, encoding, rate string,
		words bool) {
		if len(file) > 256<<10 {
			t.Skip("large files only slow the fuzzer down; the cap has its own test")
		}
		var body bytes.Buffer
		mw := multipart.NewWriter(&body)
		fw, _ := mw.CreateFormFile("file", "clip.wav")
		_, _ = fw.Write(file)
		_ = mw.WriteField("model", model)
		_ = mw.WriteField("language", language)
		if words {
			_ = mw.WriteField("timestamp_granularities[]", "word")
		}
		_ = mw.Close()

		q := url.Values{}
		if encoding != "" {
			q.Set("encoding", encoding)
		}
		if rate != "" {
			q.Set("sample_rate", rate)
		}
		r := httptest.NewRequest(http.MethodPost, "/stt?"+q.Encode(), &body)
		r.Header.Set("Content-Type", mw.FormDataContentType())
		r.Header.Set("X-API-Key", testKey)
		r.Header.Set("Cartesia-Version", testVersion)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, r)

		if rec.Code != http.StatusOK {
			checkErrorAnswer(t, rec)
			return
		}
		var tr struct {
			Type     string
			Text     string
			Duration float64
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &tr); err != nil || tr.Type != "transcript" ||
			!(tr.Duration >= 0) {
			t.Fatalf("200 with body %q", rec.Body)
		}
	})
}

// wsMessage is one message a fuzz target sends on a WebSocket.
type wsMessage struct {
	typ  websocket.MessageType
	data []byte
}

// wsExchange opens path on srv with the API key, sends msgs, and reads every message
// until last says it has seen the answer to the final one or the server closes. Each
// message read must pass check. Reaching neither within the deadline is a failure: the
// emulator stopped answering.
func wsExchange(t *testing.T, srv *httptest.Server, path string, msgs []wsMessage,
	check func([]byte) error, last func([]byte) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn, resp, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(srv.URL, "http")+path,
		&websocket.DialOptions{HTTPHeader: keyHeaders()})
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %d %v", path, status, err)
	}
	defer conn.CloseNow()
	conn.SetReadLimit(16 << 20)

	go func() {
		for _, m := range msgs {
			if conn.Write(ctx, m.typ, m.data) != nil {
				return
			}
		}
	}()
	for {
		typ, data, err := conn.Read(ctx)
		if err != nil {
			code := websocket.CloseStatus(err)
			if code == websocket.StatusNormalClosure || code == websocket.StatusPolicyViolation ||
				code == websocket.StatusMessageTooBig {
				return
			}
			t.Fatalf("no answer to the last message: %v", err)
		}
		if typ != websocket.MessageText {
			t.Fatalf("binary message %q from the emulator", data)
		}
		if err := check(data); err != nil {
			t.Fatalf("message %q: %v", data, err)
		}
		if last(data) {
			return
		}
	}
}

// checkStreamError holds an error event to the structured shape of testVersion.
func checkStreamError(raw []byte) error {
	var ev errorEvent
	if err := json.Unmarshal(raw, &ev); err != nil {
		return err
	}
	if !ev.Done || ev.ErrorCode == nil || !slices.Contains(knownCodes, *ev.ErrorCode) ||
		ev.Title == "" || ev.Message == "" || ev.StatusCode < 400 {
		return fmt.Errorf("error event is not in the structured shape")
	}
	return nil
}

// sentinelContext is the context id of the message sent after the fuzzed one; its
// error event ends the exchange.
const sentinelContext = "zz-fuzz-sentinel"

// FuzzTTSWebSocketMessage: any message on /tts/websocket is answered only with events
// the browser client decodes (chunk, timestamps, flush_done, done, error), and the
// connection keeps answering: a later bad input still gets its error event.
func FuzzTTSWebSocketMessage(f *testing.F) {
	valid := func(changes string) []byte {
		return []byte(`{"model_id":"sonic-3","transcript":"Hi.","voice":{"mode":"id","id":"` +
			testVoice + `"},"output_format":{"container":"raw","encoding":"pcm_s16le",` +
			`"sample_rate":8000},"context_id":"c1"` + changes + `}`)
	}
	f.Add(valid(``), false)
	f.Add(valid(`,"continue":true,"flush":true,"add_timestamps":true,"add_phoneme_timestamps":true`),
		false)
	f.Add(valid(`,"voice":"`+FaultVoiceID+`"`), false)
	f.Add([]byte(`{"context_id":"c1","cancel":true}`), false)
	f.Add([]byte(`{"context_id":"`+sentinelContext+`","transcript":"x","continue":true}`), false)
	f.Add([]byte(`{"context_id":7}`), false)
	f.Add([]byte("\x00\x01"), true)
	f.Add([]byte(`not json`), false)

	e := newFuzzEmulator(f)
	srv := httptest.NewServer(e)
	f.Cleanup(srv.Close)
	sentinel := []byte(`{"context_id":"` + sentinelContext + `","model_id":"nope"}`)

	f.Fuzz(func(t *testing.T, msg []byte, binary bool) {
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		check := func(raw []byte) error {
			ev, err := cartesia.DecodeTTSEvent(raw)
			if err != nil {
				return err
			}
			switch ev.Type {
			case cartesia.TTSChunk, cartesia.TTSTimestamps, cartesia.TTSFlushDone,
				cartesia.TTSDone, "phoneme_timestamps":
				return nil
			case cartesia.TTSError:
				return checkStreamError(raw)
			}
			return fmt.Errorf("unknown event type %q", ev.Type)
		}
		last := func(raw []byte) bool {
			ev, _ := cartesia.DecodeTTSEvent(raw)
			return ev.Type == cartesia.TTSError && ev.ContextID == sentinelContext
		}
		wsExchange(t, srv, "/tts/websocket", []wsMessage{{typ, msg},
			{websocket.MessageText, sentinel}}, check, last)
	})
}

// FuzzAgentMessage: any first message or any later event on an agent call is answered
// only with events the browser client decodes, or ends the call with 1008 (not a start)
// or 1000 (hang-up); after a bad event the call still echoes a dtmf.
func FuzzAgentMessage(f *testing.F) {
	f.Add([]byte(`{"event":"start","stream_id":"s","config":{"input_format":"mulaw_8000"},`+
		`"agent":{"introduction":"Hi"}}`), true, false)
	f.Add([]byte(`{"event":"start","config":{"input_format":"pcm_1"}}`), true, false)
	f.Add([]byte(`{"event":"media_input","media":{"payload":"AAAAAAAA"}}`), false, false)
	f.Add([]byte(`{"event":"media_input","media":{"payload":"!!"}}`), false, false)
	f.Add([]byte(`{"event":"dtmf","dtmf":"**"}`), false, false)
	f.Add([]byte(`{"event":"custom","metadata":{"hangup":true}}`), false, false)
	f.Add([]byte(`{"event":"custom","metadata":[1]}`), false, false)
	f.Add([]byte(`{"event":"start"}`), false, false)
	f.Add([]byte{0xff, 0x00}, false, true)

	e := newFuzzEmulator(f)
	srv := httptest.NewServer(e)
	f.Cleanup(srv.Close)
	start := []byte(`{"event":"start","stream_id":"s","config":{"input_format":"pcm_16000"}}`)
	sentinel := []byte(`{"event":"dtmf","dtmf":"#"}`)

	f.Fuzz(func(t *testing.T, msg []byte, first, binary bool) {
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		msgs := []wsMessage{{websocket.MessageText, start}, {typ, msg}}
		if first {
			msgs = []wsMessage{{typ, msg}}
		}
		msgs = append(msgs, wsMessage{websocket.MessageText, sentinel})

		check := func(raw []byte) error {
			ev, err := cartesia.DecodeAgentEvent(raw)
			if err != nil {
				return err
			}
			switch ev.Event {
			case cartesia.AgentAck, cartesia.AgentMediaOutput, cartesia.AgentClear,
				cartesia.AgentDTMF, cartesia.AgentCustom:
				return nil
			case cartesia.AgentError:
				return checkStreamError(raw)
			}
			return fmt.Errorf("unknown event %q", ev.Event)
		}
		last := func(raw []byte) bool {
			ev, _ := cartesia.DecodeAgentEvent(raw)
			return ev.Event == cartesia.AgentDTMF && ev.Digit == "#"
		}
		wsExchange(t, srv, "/agents/stream/agent_fuzz", msgs, check, last)
	})
}

// FuzzSTTWebSocketMessage: any query and message on /stt/websocket are answered only with
// events the browser client decodes, and a finalize after them is still answered (or
// the stream has ended with a close 1000).
func FuzzSTTWebSocketMessage(f *testing.F) {
	base := "model=ink-whisper&encoding=pcm_s16le&sample_rate=16000"
	f.Add(base, bytes.Repeat([]byte{0x10, 0x40}, 800), true)
	f.Add(base+"&max_silence_duration_secs=0.01&min_volume=0", []byte{1, 2, 3}, true)
	f.Add("model=ink-whisper&encoding=pcm_f32le&sample_rate=8000",
		[]byte{0, 0, 0xc0, 0x7f, 0, 0, 0x80, 0x7f, 0, 0, 0x80, 0xff, 0xff, 0xff, 0x7f, 0x7f},
		true)
	f.Add(base, []byte("close"), false)
	f.Add(base, []byte("finalize"), false)
	f.Add(base, []byte(`{"type":"config"}`), false)
	f.Add("model=gpt", []byte{}, true)

	e := newFuzzEmulator(f)
	srv := httptest.NewServer(e)
	f.Cleanup(srv.Close)

	f.Fuzz(func(t *testing.T, query string, msg []byte, binary bool) {
		if len(msg) > 64<<10 {
			t.Skip("over the smallest read limit")
		}
		_, err := url.Parse("ws://127.0.0.1/stt/websocket?" + query)
		if _, qerr := url.ParseQuery(query); err != nil || qerr != nil ||
			strings.ContainsAny(query, "# ") {
			t.Skip("not a query a client library would send")
		}
		typ := websocket.MessageText
		if binary {
			typ = websocket.MessageBinary
		}
		check := func(raw []byte) error {
			ev, err := cartesia.DecodeSTTEvent(raw)
			if err != nil {
				return err
			}
			switch ev.Type {
			case "transcript":
				if !utf8.ValidString(ev.Text) {
					return errors.New("transcript text is not UTF-8")
				}
				return nil
			case "flush_done", "done":
				return nil
			case cartesia.STTError:
				return checkStreamError(raw)
			}
			return fmt.Errorf("unknown event type %q", ev.Type)
		}
		final := false
		last := func(raw []byte) bool {
			ev, _ := cartesia.DecodeSTTEvent(raw)
			if ev.Type == "flush_done" {
				final = true // the final transcript follows flush_done
				return false
			}
			return final && ev.Type == "transcript" || ev.Type == cartesia.STTError ||
				ev.Type == "done"
		}
		wsExchange(t, srv, "/stt/websocket?"+query, []wsMessage{{typ, msg},
			{websocket.MessageText, []byte("finalize")}}, check, last)
	})
}
