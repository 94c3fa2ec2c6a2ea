package emulator

import (
	"bytes"
	"encoding/json"
	"io"
	"math"
	"mime/multipart"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// sttUpload is one batch request: form fields (repeatable) and the file.
type sttUpload struct {
	path    string // "/stt" unless set; may carry a query
	fields  [][2]string
	file    []byte
	noFile  bool
	headers map[string]string // nil: API key and current version
}

// sttForm is the usual form: model ink-whisper and word timestamps.
func sttFields(extra ...[2]string) [][2]string {
	return append([][2]string{{"model", "ink-whisper"}, {"language", "en"}}, extra...)
}

var sttWordTimes = [2]string{"timestamp_granularities[]", "word"}

// post sends the upload as multipart/form-data.
func (u sttUpload) post(t *testing.T, h *harness) response {
	t.Helper()
	var body bytes.Buffer
	mw := multipart.NewWriter(&body)
	for _, f := range u.fields {
		if err := mw.WriteField(f[0], f[1]); err != nil {
			t.Fatal(err)
		}
	}
	if !u.noFile {
		fw, err := mw.CreateFormFile("file", "clip.wav")
		if err != nil {
			t.Fatal(err)
		}
		_, _ = fw.Write(u.file)
	}
	_ = mw.Close()

	path := u.path
	if path == "" {
		path = "/stt"
	}
	req, err := http.NewRequest(http.MethodPost, h.srv.URL+path, &body)
	if err != nil {
		t.Fatal(err)
	}
	headers := u.headers
	if headers == nil {
		headers = map[string]string{"Authorization": "Bearer " + testKey,
			"Cartesia-Version": testVersion}
	}
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", mw.FormDataContentType())
	resp, err := h.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: data, resp: resp}
}

// sttResult is the batch response.
type sttResult struct {
	Type      string    `json:"type"`
	RequestID string    `json:"request_id"`
	Text      string    `json:"text"`
	Language  string    `json:"language"`
	Duration  float64   `json:"duration"`
	Words     []sttWord `json:"words"`
	IsFinal   *bool     `json:"is_final"`
	Emulator  *sttNote  `json:"emulator"`
}

func (r response) transcript(t *testing.T) sttResult {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status %d: %s", r.status, r.body)
	}
	var out sttResult
	if err := json.Unmarshal(r.body, &out); err != nil {
		t.Fatalf("body %s: %v", r.body, err)
	}
	if out.Type != "transcript" || out.RequestID != r.header.Get("Cartesia-Request-Id") {
		t.Errorf("type %q request_id %q; want transcript and the header's id", out.Type,
			out.RequestID)
	}
	return out
}

// sttWAV is a WAV file of samples.
func sttWAV(t *testing.T, enc audio.Encoding, rate int, samples []float32) []byte {
	t.Helper()
	data, err := audio.EncodeWAV(enc, rate, samples)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestSTTBatchTranscribesWAVInEveryEncoding(t *testing.T) {
	h := streamHarness(t, nil)
	const text = "Batch: naïve café ☕ test."
	for _, enc := range audio.Encodings {
		for _, rate := range []int{8000, 22050, 48000} {
			clip := sttClip(sttSilence(250*time.Millisecond, rate), tonecode.Encode(text, rate),
				sttSilence(250*time.Millisecond, rate))
			got := sttUpload{fields: sttFields(sttWordTimes),
				file: sttWAV(t, enc, rate, clip)}.post(t, h).transcript(t)

			wantDuration := 0.5 + tonecode.Duration(text).Seconds()
			if got.Text != text || got.Language != "en" || got.Emulator != nil ||
				math.Abs(got.Duration-wantDuration) > 0.002 || got.IsFinal != nil {
				t.Errorf("%s at %d Hz: %+v", enc, rate, got)
			}
			spans := tonecode.Timeline(text)
			if len(got.Words) != len(spans) {
				t.Fatalf("%s at %d Hz: words %v", enc, rate, got.Words)
			}
			for i, w := range got.Words {
				if w.Word != spans[i].Text || math.Abs(w.Start-(0.25+spans[i].Start)) > 0.002 ||
					math.Abs(w.End-(0.25+spans[i].End)) > 0.002 {
					t.Errorf("%s at %d Hz: word %d = %+v, want %+v + 0.25 s", enc, rate, i, w,
						spans[i])
				}
			}
		}
	}
}

func TestSTTBatchTranscribesRawAudioDescribedByTheQuery(t *testing.T) {
	h := streamHarness(t, nil)
	for _, enc := range sttAllEncodings {
		const rate = 16000
		text := "raw " + enc
		got := sttUpload{path: "/stt?encoding=" + enc + "&sample_rate=16000",
			fields: sttFields(), file: sttEncode(t, enc, tonecode.Encode(text, rate))}.post(t, h).
			transcript(t)
		if got.Text != text || got.Words != nil {
			t.Errorf("%s: %+v, want the text without words (none asked for)", enc, got)
		}
	}
}

func TestSTTBatchJoinsUtterancesAndReportsOtherAudio(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 16000
	tests := []struct {
		name     string
		clip     []float32
		text     string
		segments int
	}{
		{"two utterances",
			sttClip(tonecode.Encode("One.", rate), sttSilence(time.Second, rate),
				tonecode.Encode("Two.", rate)),
			"One. Two.", -1},
		{"silence", sttSilence(time.Second, rate), "", 0},
		{"noise", sttClip(sttNoise(300*time.Millisecond, rate, 0.2),
			sttSilence(300*time.Millisecond, rate), sttNoise(300*time.Millisecond, rate, 0.2)),
			"", 2},
	}
	for _, tt := range tests {
		got := sttUpload{fields: sttFields(), file: sttWAV(t, audio.S16LE, rate, tt.clip)}.
			post(t, h).transcript(t)
		switch {
		case got.Text != tt.text:
			t.Errorf("%s: text %q, want %q", tt.name, got.Text, tt.text)
		case tt.segments < 0 && got.Emulator != nil:
			t.Errorf("%s: emulator note %+v on decoded audio", tt.name, got.Emulator)
		case tt.segments >= 0 && (got.Emulator == nil || got.Emulator.ToneCode ||
			len(got.Emulator.SpeechSegments) != tt.segments):
			t.Errorf("%s: emulator note %+v, want %d segments", tt.name, got.Emulator,
				tt.segments)
		}
		if want := float64(len(tt.clip)) / rate; math.Abs(got.Duration-want) > 0.001 {
			t.Errorf("%s: duration %v, want %v", tt.name, got.Duration, want)
		}
	}
}

func TestSTTBatchValidation(t *testing.T) {
	h := streamHarness(t, nil)
	wav := sttWAV(t, audio.S16LE, 16000, tonecode.Encode("x", 16000))
	tests := []struct {
		name     string
		upload   sttUpload
		status   int
		code     string
		fragment string
	}{
		{"no file", sttUpload{fields: sttFields(), noFile: true}, 400, codeInvalidRequest, "file"},
		{"empty file", sttUpload{fields: sttFields()}, 400, codeInvalidRequest, "empty"},
		{"no model", sttUpload{fields: [][2]string{{"language", "en"}}, file: wav}, 400,
			codeInvalidRequest, "model"},
		{"TTS model", sttUpload{fields: [][2]string{{"model", "sonic-3"}}, file: wav}, 400,
			codeModelNotFound, "sonic-3"},
		{"bad language", sttUpload{fields: sttFields([2]string{"language", "EN-us"}), file: wav},
			400, codeInvalidRequest, "ISO-639-1"},
		{"segment timestamps", sttUpload{fields: sttFields([2]string{
			"timestamp_granularities[]", "segment"}), file: wav}, 400, codeInvalidRequest, "word"},
		{"mp3", sttUpload{fields: sttFields(), file: []byte("ID3\x04\x00\x00\x00\x00\x00\x00")},
			400, codeUnsupported, "MP3"},
		{"ogg", sttUpload{fields: sttFields(), file: []byte("OggS\x00\x02rest")}, 400,
			codeUnsupported, "WAV files"},
		{"unknown bytes", sttUpload{fields: sttFields(), file: []byte{1, 2, 3, 4}}, 400,
			codeUnsupported, "encoding and sample_rate"},
		{"half a sample", sttUpload{path: "/stt?encoding=pcm_s16le&sample_rate=16000",
			fields: sttFields(), file: []byte{1, 2, 3}}, 400, codeInvalidRequest, "whole number"},
		{"encoding without rate", sttUpload{path: "/stt?encoding=pcm_s16le",
			fields: sttFields(), file: wav}, 400, codeInvalidRequest, "together"},
		{"rate too low", sttUpload{path: "/stt?encoding=pcm_s16le&sample_rate=4000",
			fields: sttFields(), file: wav}, 400, codeUnsupported, "8000"},
		{"truncated WAV", sttUpload{fields: sttFields(), file: wav[:30]}, 400,
			codeInvalidRequest, "WAV"},
		{"no version on /stt", sttUpload{fields: sttFields(), file: wav,
			headers: map[string]string{"Authorization": "Bearer " + testKey}}, 400,
			codeVersionRequired, "Cartesia-Version"},
		{"bad version on the OpenAI route", sttUpload{path: "/audio/transcriptions",
			fields: sttFields(), file: wav, headers: map[string]string{
				"Authorization": "Bearer " + testKey, "Cartesia-Version": "latest"}}, 400,
			codeInvalidVersion, "latest"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.upload.post(t, h).wantError(t, tt.status, tt.code, tt.fragment)
		})
	}
}

func TestSTTBatchNeedsMultipart(t *testing.T) {
	h := streamHarness(t, nil)
	r := h.do(request{path: "/stt", body: `{"model":"ink-whisper"}`})
	r.wantError(t, http.StatusBadRequest, codeInvalidRequest, "multipart/form-data")
}

func TestSTTBatchBodyOver25MiBIs413(t *testing.T) {
	h := streamHarness(t, nil)
	big := make([]byte, 25<<20+1)
	r := sttUpload{path: "/stt?encoding=pcm_mulaw&sample_rate=8000", fields: sttFields(),
		file: big}.post(t, h)
	r.wantError(t, http.StatusRequestEntityTooLarge, codeTooLarge, "25 MiB")

	// Just under the cap (with the form around it) is transcribed: 52 minutes of loud
	// audio without a tone code (0x00 is full scale in µ-law), heard as speech that the
	// listener splits every five minutes.
	ok := sttUpload{path: "/stt?encoding=pcm_mulaw&sample_rate=8000", fields: sttFields(),
		file: make([]byte, 24<<20)}.post(t, h).transcript(t)
	if ok.Text != "" || math.Abs(ok.Duration-float64(24<<20)/8000) > 0.001 ||
		ok.Emulator == nil || len(ok.Emulator.SpeechSegments) != 11 {
		t.Errorf("loud audio of 24 MiB: text %q, duration %v, note %v", ok.Text, ok.Duration,
			ok.Emulator != nil)
	}
}

func TestSTTOpenAIRouteAnswersLikeSTT(t *testing.T) {
	h := streamHarness(t, nil)
	const text = "OpenAI compatible."
	wav := sttWAV(t, audio.F32LE, 24000, tonecode.Encode(text, 24000))

	// The OpenAI SDK sends a bearer credential and no Cartesia-Version.
	for name, headers := range map[string]map[string]string{
		"API key":   {"Authorization": "Bearer " + testKey},
		"stt token": {"Authorization": "Bearer " + h.mint(`{"stt":true}`, 60)},
	} {
		got := sttUpload{path: "/audio/transcriptions", fields: sttFields(sttWordTimes),
			file: wav, headers: headers}.post(t, h).transcript(t)
		if got.Text != text || len(got.Words) != 2 {
			t.Errorf("%s: %+v", name, got)
		}
	}
}

func TestSTTBatchNeedsTheSTTGrant(t *testing.T) {
	h := streamHarness(t, nil)
	wav := sttWAV(t, audio.S16LE, 16000, tonecode.Encode("x", 16000))
	tts := h.mint(`{"tts":true,"agent":true}`, 60)
	for _, path := range []string{"/stt", "/audio/transcriptions"} {
		r := sttUpload{path: path, fields: sttFields(), file: wav,
			headers: bearer(tts)}.post(t, h)
		r.wantError(t, http.StatusForbidden, codeInsufficientGrant, "stt")
	}
	r := sttUpload{fields: sttFields(), file: wav,
		headers: map[string]string{"Cartesia-Version": testVersion}}.post(t, h)
	r.wantError(t, http.StatusUnauthorized, codeUnauthorized, "credentials")
	if !strings.Contains(h.logs.String(), `"route":"stt_batch"`) {
		t.Error("batch calls are not logged under their route name")
	}
}
