package emulator

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// obj is a JSON object in test bodies.
type obj = map[string]any

// remove marks a field to delete in ttsWith.
type remove struct{}

// ttsWith is a valid /tts/bytes body with some fields replaced (or removed).
func ttsWith(changes obj) string {
	body := obj{
		"model_id":      "sonic-3",
		"transcript":    "Hello.",
		"voice":         obj{"mode": "id", "id": testVoice},
		"output_format": obj{"container": "raw", "encoding": "pcm_s16le", "sample_rate": 8000},
	}
	for k, v := range changes {
		if _, ok := v.(remove); ok {
			delete(body, k)
			continue
		}
		body[k] = v
	}
	b, _ := json.Marshal(body)
	return string(b)
}

// set is a valid /tts/bytes body with one field replaced (or removed).
func set(key string, value any) string {
	return ttsWith(obj{key: value})
}

func format(container, encoding string, rate any) obj {
	f := obj{"container": container, "encoding": encoding, "sample_rate": rate}
	if encoding == "" {
		delete(f, "encoding")
	}
	return f
}

func TestTTSBytesValidation(t *testing.T) {
	h := newHarness(t, 0)
	tests := []struct {
		name     string
		body     string
		code     string // "" = accepted
		fragment string
	}{
		{"model missing", set("model_id", remove{}), codeInvalidRequest, "model_id is required"},
		{"model empty", set("model_id", ""), codeInvalidRequest, "model_id is required"},
		{"model not a string", set("model_id", 3), codeInvalidRequest, "model_id must be a string"},
		{"unknown model", set("model_id", "gpt-4o"),
			codeModelNotFound, `"gpt-4o" is not a known model`},
		{"dated model", set("model_id", "sonic-3.5-2026-05-04"), "", ""},
		{"retired model", set("model_id", "sonic-english"), "", ""},
		{"latest model", set("model_id", "sonic-latest"), "", ""},

		{"transcript missing", set("transcript", remove{}),
			codeInvalidRequest, "transcript is required"},
		{"transcript null", set("transcript", nil), codeInvalidRequest, "transcript is required"},
		{"transcript not a string", set("transcript", []string{"a"}),
			codeInvalidRequest, "transcript must be a string"},
		{"transcript too long", set("transcript", strings.Repeat("a", 10001)),
			codeInvalidRequest, "10001 characters; the maximum is 10000"},
		{"transcript at the limit", set("transcript", strings.Repeat("é", 10000)), "", ""},
		{"transcript empty", set("transcript", ""), "", ""},

		{"voice missing", set("voice", remove{}), codeInvalidRequest, "voice is required"},
		{"voice bare id", set("voice", testVoice), "", ""},
		{"voice id object", set("voice", obj{"id": testVoice}), "", ""},
		{"voice upper-case id", set("voice", strings.ToUpper(testVoice)), "", ""},
		{"voice not a UUID", set("voice", "narrator"),
			codeInvalidRequest, `"narrator" is not a UUID`},
		{"voice id not a UUID", set("voice", obj{"mode": "id", "id": "abc"}),
			codeInvalidRequest, "is not a UUID"},
		{"voice id missing", set("voice", obj{"mode": "id"}),
			codeInvalidRequest, "voice.id is required"},
		{"voice embedding", set("voice", obj{"mode": "embedding", "embedding": []float64{0.1}}),
			codeInvalidRequest, `"embedding" is not accepted`},
		{"voice unknown mode", set("voice", obj{"mode": "clone", "id": testVoice}),
			codeInvalidRequest, `voice.mode must be "id"`},
		{"voice a number", set("voice", 42),
			codeInvalidRequest, "voice must be a voice id string or an object"},

		{"format missing", set("output_format", remove{}),
			codeInvalidRequest, "output_format is required"},
		{"format a string", set("output_format", "wav"),
			codeInvalidRequest, "output_format must be an object"},
		{"mp3",
			set("output_format", obj{"container": "mp3", "sample_rate": 44100, "bit_rate": 128000}),
			codeUnsupported, "cannot produce mp3"},
		{"ogg", set("output_format", format("ogg", "pcm_s16le", 8000)),
			codeInvalidRequest, `got "ogg"`},
		{"container missing", set("output_format", obj{"encoding": "pcm_s16le", "sample_rate": 8000}),
			codeInvalidRequest, "output_format.container must be"},
		{"24-bit encoding", set("output_format", format("raw", "pcm_s24le", 8000)),
			codeInvalidRequest, "output_format.encoding must be one of"},
		{"encoding missing", set("output_format", format("wav", "", 8000)),
			codeInvalidRequest, "output_format.encoding must be one of"},
		{"odd sample rate", set("output_format", format("raw", "pcm_s16le", 11025)),
			codeInvalidRequest, "output_format.sample_rate must be one of"},
		{"sample rate string", set("output_format", format("raw", "pcm_s16le", "8000")),
			codeInvalidRequest, "output_format.sample_rate must be an integer"},
		{"sample rate float", set("output_format", format("raw", "pcm_s16le", 8000.5)),
			codeInvalidRequest, "output_format.sample_rate must be an integer"},
		{"sample rate missing", set("output_format", obj{"container": "raw", "encoding": "pcm_s16le"}),
			codeInvalidRequest, "output_format.sample_rate must be one of"},

		{"language", set("language", "ja"), "", ""},
		{"unknown language", set("language", "xx"),
			codeInvalidRequest, `language "xx" is not supported`},
		{"locale", set("locale", "en-GB"), "", ""},
		{"bad locale", set("locale", "!!"), codeInvalidRequest, "not a locale tag"},
		{"language and locale", ttsWith(obj{"language": "en", "locale": "en-GB"}),
			codeInvalidRequest, "not both"},

		{"generation config in range",
			set("generation_config", obj{"volume": 2, "speed": 0.6, "emotion": "calm"}),
			"", ""},
		{"volume too loud", set("generation_config", obj{"volume": 2.5}),
			codeInvalidRequest, "generation_config.volume must be between 0.5 and 2"},
		{"volume too quiet", set("generation_config", obj{"volume": 0.4}),
			codeInvalidRequest, "generation_config.volume must be between 0.5 and 2"},
		{"volume a word", set("generation_config", obj{"volume": "loud"}),
			codeInvalidRequest, "generation_config.volume must be a number"},
		{"speed too slow", set("generation_config", obj{"speed": 0.5}),
			codeInvalidRequest, "generation_config.speed must be between 0.6 and 1.5"},
		{"speed too fast", set("generation_config", obj{"speed": 1.6}),
			codeInvalidRequest, "generation_config.speed must be between 0.6 and 1.5"},
		{"generation config a string", set("generation_config", "fast"),
			codeInvalidRequest, "generation_config must be an object"},

		{"save", set("save", true), "", ""},
		{"save a string", set("save", "yes"), codeInvalidRequest, "save must be true or false"},
		{"unknown fields ignored",
			ttsWith(obj{"flux_capacitor": true, "speed": "fast", "duration": 3}), "", ""},
		{"duplicate key", `{"model_id":"sonic-3","model_id":"other","transcript":"a"}`,
			codeInvalidRequest, `duplicate key "model_id"`},
		{"not JSON", `model_id=sonic-3`, codeInvalidRequest, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(request{path: "/tts/bytes", body: tt.body})
			if tt.code == "" {
				if r.status != http.StatusOK {
					t.Fatalf("status %d: %s", r.status, r.body)
				}
				return
			}
			r.wantError(t, http.StatusBadRequest, tt.code, tt.fragment)
		})
	}
}

func TestTTSBytesBodyOver64KiBIs413(t *testing.T) {
	h := newHarness(t, 0)
	body := ttsWith(obj{"padding": strings.Repeat("x", 64<<10)})
	h.do(request{path: "/tts/bytes", body: body}).
		wantError(t, http.StatusRequestEntityTooLarge, codeTooLarge, "64 KiB")
}

func TestTTSBytesAudioDecodesToTheTranscript(t *testing.T) {
	h := newHarness(t, 0)
	const transcript = "Bonjour, 世界! Tone code 👋"
	for _, container := range []string{"raw", "wav"} {
		for _, enc := range audio.Encodings {
			for _, rate := range []int{8000, 16000, 22050, 24000, 44100, 48000} {
				r := h.do(request{path: "/tts/bytes",
					body: ttsBody(transcript, container, string(enc), rate)})
				if r.status != http.StatusOK {
					t.Fatalf("%s %s %d: status %d: %s", container, enc, rate, r.status, r.body)
				}

				samples := decodeBody(t, r, container, enc, rate)
				if len(samples) != tonecode.SampleCount(transcript, rate) {
					t.Errorf("%s %s %d: %d samples, want %d", container, enc, rate,
						len(samples), tonecode.SampleCount(transcript, rate))
				}
				got, err := tonecode.Decode(samples, rate)
				if err != nil || got != transcript {
					t.Errorf("%s %s %d: decoded %q, %v", container, enc, rate, got, err)
				}
			}
		}
	}
}

// decodeBody checks the response's container and returns its samples.
func decodeBody(t *testing.T, r response, container string, enc audio.Encoding,
	rate int) []float32 {
	t.Helper()
	ct := r.header.Get("Content-Type")
	if container == "raw" {
		if ct != "application/octet-stream" {
			t.Errorf("raw: Content-Type %q", ct)
		}
		samples, err := audio.Decode(enc, r.body)
		if err != nil {
			t.Fatal(err)
		}
		return samples
	}

	if ct != "audio/wav" {
		t.Errorf("wav: Content-Type %q", ct)
	}
	w, err := audio.ParseWAV(r.body)
	if err != nil {
		t.Fatal(err)
	}
	if w.Encoding != enc || w.SampleRate != rate || w.Channels != 1 {
		t.Errorf("WAV is %s at %d Hz, %d channels; want %s at %d, mono",
			w.Encoding, w.SampleRate, w.Channels, enc, rate)
	}
	return w.Samples
}

func TestTTSBytesIsChunkedNotSized(t *testing.T) {
	h := newHarness(t, 0)
	r := h.do(request{path: "/tts/bytes", body: smallTTS})
	if r.resp.ContentLength != -1 || len(r.resp.TransferEncoding) != 1 ||
		r.resp.TransferEncoding[0] != "chunked" {
		t.Errorf("Content-Length %d, Transfer-Encoding %v; want a chunked stream",
			r.resp.ContentLength, r.resp.TransferEncoding)
	}
}

func TestTTSBytesAcceptsAccessToken(t *testing.T) {
	h := newHarness(t, 0)
	r := h.do(request{path: "/tts/bytes", headers: bearer(h.mint(`{"tts":true}`, 60)),
		body: ttsBody("token", "raw", "pcm_f32le", 24000)})
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	samples, _ := audio.Decode(audio.F32LE, r.body)
	if got, err := tonecode.Decode(samples, 24000); got != "token" {
		t.Errorf("decoded %q, %v", got, err)
	}
}

func TestTTSBytesVolumeScalesAmplitude(t *testing.T) {
	h := newHarness(t, 0)
	peak := func(volume float64) float64 {
		body := ttsWith(obj{
			"output_format":     format("raw", "pcm_f32le", 16000),
			"generation_config": obj{"volume": volume},
		})
		r := h.do(request{path: "/tts/bytes", body: body})
		samples, err := audio.Decode(audio.F32LE, r.body)
		if err != nil || r.status != http.StatusOK {
			t.Fatalf("volume %v: status %d, %v", volume, r.status, err)
		}
		var p float64
		for _, s := range samples {
			p = math.Max(p, math.Abs(float64(s)))
		}
		return p
	}

	quiet, loud := peak(0.5), peak(2)
	if ratio := loud / quiet; math.Abs(ratio-4) > 0.01 {
		t.Errorf("volume 2 / volume 0.5 peak ratio %.3f, want 4", ratio)
	}
	if loud > 1 {
		t.Errorf("volume 2 clips: peak %v", loud)
	}
}

func TestTTSBytesSaveReturnsFileID(t *testing.T) {
	h := newHarness(t, 0)
	saved := h.do(request{path: "/tts/bytes", body: ttsWith(obj{"save": true})})
	if id := saved.header.Get("Cartesia-File-ID"); !uuidV4.MatchString(id) {
		t.Errorf("save:true: Cartesia-File-ID %q, want a UUID", id)
	}
	for _, save := range []any{false, remove{}} {
		r := h.do(request{path: "/tts/bytes", body: ttsWith(obj{"save": save})})
		if _, ok := r.header["Cartesia-File-Id"]; ok {
			t.Errorf("save %v: Cartesia-File-ID sent", save)
		}
	}
}

// flushCounter records how a handler writes: every Write and Flush, in order.
type flushCounter struct {
	header  http.Header
	status  int
	body    bytes.Buffer
	writes  []int // size of each write
	flushes int
}

func (w *flushCounter) Header() http.Header { return w.header }
func (w *flushCounter) WriteHeader(s int)   { w.status = s }
func (w *flushCounter) Flush()              { w.flushes++ }
func (w *flushCounter) Write(p []byte) (int, error) {
	w.writes = append(w.writes, len(p))
	return w.body.Write(p)
}

func TestTTSBytesStreamsFlushed100msChunks(t *testing.T) {
	h := newHarness(t, 0)
	const transcript = "Streaming in chunks, please."
	const rate = 16000

	w := &flushCounter{header: http.Header{}}
	req := httptest.NewRequest(http.MethodPost, "/tts/bytes",
		strings.NewReader(ttsBody(transcript, "wav", "pcm_s16le", rate)))
	req.Header.Set("X-API-Key", testKey)
	req.Header.Set("Cartesia-Version", testVersion)
	h.emu.ServeHTTP(w, req)

	if w.status != http.StatusOK {
		t.Fatalf("status %d: %s", w.status, w.body.String())
	}

	// The WAV header, then one write per 100 ms of audio, each flushed at once.
	samples := tonecode.SampleCount(transcript, rate)
	chunk := rate / 10
	wantChunks := (samples + chunk - 1) / chunk
	if len(w.writes) != 1+wantChunks || w.flushes != len(w.writes) {
		t.Fatalf("%d writes and %d flushes, want %d of each",
			len(w.writes), w.flushes, 1+wantChunks)
	}
	for i, n := range w.writes[1:] {
		if want := min(chunk, samples-i*chunk) * 2; n != want {
			t.Errorf("chunk %d has %d bytes, want %d", i, n, want)
		}
	}
}

func TestTTSBytesPaceSpreadsChunksOverTime(t *testing.T) {
	h := newHarness(t, 1)
	const transcript = "Paced." // 20 symbols: 400 ms, 4 chunks

	start := time.Now()
	r := h.do(request{path: "/tts/bytes", body: ttsBody(transcript, "raw", "pcm_s16le", 8000)})
	elapsed := time.Since(start)

	if r.status != http.StatusOK {
		t.Fatalf("status %d", r.status)
	}
	// In real time the last chunk is due 300 ms after the first; it cannot come sooner.
	if elapsed < 300*time.Millisecond {
		t.Errorf("stream took %v, want at least 300ms at pace 1", elapsed)
	}
}

func TestTTSBytesCancelStopsTheStream(t *testing.T) {
	h := newHarness(t, 1) // real time: the whole clip would take about 6 seconds
	handlerDone := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(handlerDone)
		h.emu.ServeHTTP(w, r)
	}))
	defer srv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/tts/bytes",
		strings.NewReader(ttsBody(strings.Repeat("long ", 60), "raw", "pcm_s16le", 8000)))
	req.Header.Set("X-API-Key", testKey)
	req.Header.Set("Cartesia-Version", testVersion)
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()

	// The first chunk arrives at once; the stream is still running.
	if _, err := io.ReadFull(resp.Body, make([]byte, 1000)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-handlerDone:
		t.Fatal("the handler finished before the client cancelled")
	default:
	}

	cancel()
	select {
	case <-handlerDone:
	case <-time.After(3 * time.Second):
		t.Fatal("the stream was still running 3 s after the client cancelled")
	}
	if logs := h.logs.String(); !strings.Contains(logs, `"aborted":true`) {
		t.Errorf("the early end is not logged: %s", logs)
	}
}

func TestStreamAudioStopsWhenContextEnds(t *testing.T) {
	h := newHarness(t, 0)
	ctx, cancel := context.WithCancel(context.Background())
	sig := tonecode.NewSignal(strings.Repeat("many chunks ", 20), 8000)

	// The writer never fails: only the context can stop the stream.
	chunks := 0
	err := h.emu.streamAudio(ctx, sig, audio.S16LE, 1, func([]byte) error {
		chunks++
		cancel()
		return nil
	})
	if err != context.Canceled || chunks != 1 {
		t.Errorf("err %v after %d chunks, want context.Canceled after 1", err, chunks)
	}
}
