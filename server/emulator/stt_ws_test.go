package emulator

import (
	"context"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// sttAllEncodings are Cartesia's STT encodings, the four of package audio and two more.
var sttAllEncodings = []string{"pcm_s16le", "pcm_s32le", "pcm_f16le", "pcm_f32le",
	"pcm_mulaw", "pcm_alaw"}

// sttRates are Cartesia's common rates plus one that is not a multiple of 50 Hz.
var sttRates = []int{8000, 11025, 16000, 22050, 24000, 44100, 48000}

// sttEncode encodes samples as enc; the two encodings package audio lacks are written here.
func sttEncode(t *testing.T, enc string, samples []float32) []byte {
	t.Helper()
	switch enc {
	case "pcm_s32le":
		out := make([]byte, 0, 4*len(samples))
		for _, s := range samples {
			v := math.Round(float64(s) * (1 << 31))
			v = math.Max(math.MinInt32, math.Min(math.MaxInt32, v))
			out = binary.LittleEndian.AppendUint32(out, uint32(int32(v)))
		}
		return out
	case "pcm_f16le":
		out := make([]byte, 0, 2*len(samples))
		for _, s := range samples {
			out = binary.LittleEndian.AppendUint16(out, sttToHalf(s))
		}
		return out
	}
	data, err := audio.Encode(audio.Encoding(enc), samples)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// sttToHalf rounds a sample in -1..1 to IEEE 754 binary16 (normal and subnormal values).
func sttToHalf(f float32) uint16 {
	bits := math.Float32bits(f)
	sign := uint16(bits>>16) & 0x8000
	a := math.Abs(float64(f))
	if a < 1.0/(1<<14) { // subnormal: multiples of 2^-24
		return sign | uint16(math.Round(a*(1<<24)))
	}
	exp := int(bits>>23&0xFF) - 127 + 15
	mant := bits & 0x7FFFFF
	h := uint32(exp)<<10 | mant>>13
	if mant&0x1FFF > 0x1000 || (mant&0x1FFF == 0x1000 && h&1 == 1) {
		h++ // round to nearest even
	}
	return sign | uint16(h)
}

// sttSilence is d of digital silence at rate.
func sttSilence(d time.Duration, rate int) []float32 {
	return make([]float32, int64(d)*int64(rate)/int64(time.Second))
}

// sttNoise is d of white noise with the given RMS, from a fixed seed.
func sttNoise(d time.Duration, rate int, rms float64) []float32 {
	r := rand.New(rand.NewPCG(1, 2))
	out := sttSilence(d, rate)
	for i := range out {
		out[i] = float32(r.NormFloat64() * rms)
	}
	return out
}

// sttClip concatenates pieces of audio.
func sttClip(pieces ...[]float32) []float32 {
	var out []float32
	for _, p := range pieces {
		out = append(out, p...)
	}
	return out
}

// sttQuery is a valid /stt/websocket query for enc at rate, with changes applied
// ("" deletes a parameter).
func sttQuery(enc string, rate int, changes ...string) string {
	q := url.Values{"model": {"ink-whisper"}, "encoding": {enc},
		"sample_rate": {itoa(rate)}, "language": {"en"}}
	for i := 0; i+1 < len(changes); i += 2 {
		if changes[i+1] == "" {
			q.Del(changes[i])
			continue
		}
		q.Set(changes[i], changes[i+1])
	}
	return q.Encode()
}

// sttSendAudio streams data in chunks of chunk bytes as binary messages.
func sttSendAudio(t *testing.T, conn *websocket.Conn, data []byte, chunk int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for len(data) > 0 {
		n := min(chunk, len(data))
		if err := conn.Write(ctx, websocket.MessageBinary, data[:n]); err != nil {
			t.Fatalf("write audio: %v", err)
		}
		data = data[n:]
	}
}

// sttChunk is the size of 100 ms of enc at rate, Cartesia's recommended chunk.
func sttChunk(enc string, rate int) int {
	return rate / 10 * sttEncodings[enc]
}

// sttSendText writes a text command such as finalize.
func sttSendText(t *testing.T, conn *websocket.Conn, text string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := conn.Write(ctx, websocket.MessageText, []byte(text)); err != nil {
		t.Fatalf("write %q: %v", text, err)
	}
}

// sttReadUntil reads events until one of type last arrives and returns all of them.
func sttReadUntil(t *testing.T, conn *websocket.Conn, last string) []obj {
	t.Helper()
	var events []obj
	for {
		ev := readEvent(t, conn)
		events = append(events, ev)
		if ev["type"] == last {
			return events
		}
		if ev["type"] == "error" {
			t.Fatalf("error event: %v", ev)
		}
	}
}

// sttFinals are the texts of the final transcripts among events.
func sttFinals(events []obj) []string {
	var texts []string
	for _, ev := range events {
		if ev["type"] == "transcript" && ev["is_final"] == true {
			texts = append(texts, ev["text"].(string))
		}
	}
	return texts
}

// sttTypes lists the event types, final transcripts marked "final".
func sttTypes(events []obj) []string {
	var types []string
	for _, ev := range events {
		typ := ev["type"].(string)
		switch {
		case typ == "transcript" && ev["is_final"] == true:
			typ = "final"
		case typ == "transcript":
			typ = "interim"
		}
		types = append(types, typ)
	}
	return types
}

// sttOpen opens /stt/websocket with the API key and the given query.
func (h *harness) sttOpen(query string) *websocket.Conn {
	h.t.Helper()
	return h.mustOpen("/stt/websocket?"+query, nil)
}

func TestSTTWebSocketDecodesEveryEncodingAndRateInChunks(t *testing.T) {
	h := streamHarness(t, nil)
	const text = "Ça va? Tone code 👋 at every rate."
	for _, enc := range sttAllEncodings {
		for _, rate := range sttRates {
			clip := sttClip(sttSilence(300*time.Millisecond, rate), tonecode.Encode(text, rate),
				sttSilence(200*time.Millisecond, rate))
			conn := h.sttOpen(sttQuery(enc, rate))
			sttSendAudio(t, conn, sttEncode(t, enc, clip), sttChunk(enc, rate))
			sttSendText(t, conn, "finalize")

			events := sttReadUntil(t, conn, "flush_done")
			events = append(events, readEvent(t, conn))
			types := strings.Join(sttTypes(events), " ")
			if types != "interim interim flush_done final" {
				t.Errorf("%s at %d Hz: events %s, want speech start, decoded text, "+
					"flush_done, final", enc, rate, types)
			}
			final := events[len(events)-1]
			if final["text"] != text || final["language"] != "en" || final["emulator"] != nil {
				t.Errorf("%s at %d Hz: final %v, want text %q", enc, rate, final, text)
			}
			if d := final["duration"].(float64); math.Abs(d-(0.5+tonecode.Duration(text).Seconds())) > 0.02 {
				t.Errorf("%s at %d Hz: duration %v", enc, rate, d)
			}
			conn.Close(websocket.StatusNormalClosure, "")
		}
	}
}

func TestSTTWebSocketWordTimestampsComeFromTheFramePosition(t *testing.T) {
	h := streamHarness(t, nil)
	const text = "Book a table for two."
	const rate = 16000
	clip := sttClip(sttSilence(500*time.Millisecond, rate), tonecode.Encode(text, rate))
	conn := h.sttOpen(sttQuery("pcm_s16le", rate))
	sttSendAudio(t, conn, sttEncode(t, "pcm_s16le", clip), sttChunk("pcm_s16le", rate))
	sttSendText(t, conn, "finalize")
	sttReadUntil(t, conn, "flush_done")
	final := readEvent(t, conn)

	words, _ := final["words"].([]any)
	want := tonecode.Timeline(text)
	if len(words) != len(want) {
		t.Fatalf("words %v, want %d", final["words"], len(want))
	}
	for i, w := range words {
		got := w.(map[string]any)
		start, end := got["start"].(float64), got["end"].(float64)
		if got["word"] != want[i].Text || math.Abs(start-(0.5+want[i].Start)) > 0.002 ||
			math.Abs(end-(0.5+want[i].End)) > 0.002 {
			t.Errorf("word %d = %v, want %q at %.3f-%.3f", i, got, want[i].Text,
				0.5+want[i].Start, 0.5+want[i].End)
		}
	}
}

func TestSTTWebSocketChunksThatSplitSamplesStillDecode(t *testing.T) {
	h := streamHarness(t, nil)
	const text = "odd chunk sizes"
	for _, chunk := range []int{5, 777, 4099, 100000} {
		rate := 44100
		clip := sttClip(sttSilence(100*time.Millisecond, rate), tonecode.Encode(text, rate))
		conn := h.sttOpen(sttQuery("pcm_f32le", rate))
		sttSendAudio(t, conn, sttEncode(t, "pcm_f32le", clip), chunk)
		sttSendText(t, conn, "finalize")
		sttReadUntil(t, conn, "flush_done")
		if final := readEvent(t, conn); final["text"] != text {
			t.Errorf("%d-byte chunks: final %v", chunk, final)
		}
	}
}

func TestSTTWebSocketLongAndBackToBackFramesDecode(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 16000
	long := strings.Repeat("A long utterance that takes a while. ", 80) // about 60 s
	first := strings.TrimSpace(strings.Repeat("First of two back-to-back frames. ", 6))
	second := strings.TrimSpace(strings.Repeat("Second frame, with no pause before it. ", 5))
	clip := sttClip(tonecode.Encode(long, rate), sttSilence(time.Second, rate),
		tonecode.Encode(first, rate), tonecode.Encode(second, rate))

	conn := h.sttOpen(sttQuery("pcm_s16le", rate))
	sttSendAudio(t, conn, sttEncode(t, "pcm_s16le", clip), sttChunk("pcm_s16le", rate))
	sttSendText(t, conn, "finalize")
	events := sttReadUntil(t, conn, "flush_done")
	events = append(events, readEvent(t, conn))

	if got := sttFinals(events); len(got) != 2 || got[0] != long || got[1] != first+" "+second {
		t.Errorf("finals %q, want the long frame, then both short ones joined by a space", got)
	}
	// The first of the two frames is reported while the second is still arriving.
	var interims []string
	for _, ev := range events {
		if ev["type"] == "transcript" && ev["is_final"] == false && ev["text"] != "" {
			interims = append(interims, ev["text"].(string))
		}
	}
	if len(interims) != 2 || interims[0] != long || interims[1] != first {
		t.Errorf("interim texts %q, want %q before the second frame ends", interims, first)
	}
}

func TestSTTWebSocketCloseAndLegacyDoneEndTheStream(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 24000
	for _, command := range []string{"close", "done"} {
		conn := h.sttOpen(sttQuery("pcm_s16le", rate))
		sttSendAudio(t, conn, sttEncode(t, "pcm_s16le", tonecode.Encode(command, rate)),
			sttChunk("pcm_s16le", rate))
		sttSendText(t, conn, command)

		events := sttReadUntil(t, conn, "done")
		if finals := sttFinals(events); len(finals) != 1 || finals[0] != command {
			t.Errorf("%s: finals %q, want the remaining transcript", command, finals)
		}
		if events[len(events)-1]["request_id"] != events[0]["request_id"] {
			t.Errorf("%s: request ids differ within one connection", command)
		}
		wantClose(t, conn, websocket.StatusNormalClosure, "")
	}
}

func TestSTTWebSocketTwoUtterancesAreTwoDeltaFinals(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 16000
	clip := sttClip(tonecode.Encode("First one.", rate), sttSilence(1200*time.Millisecond, rate),
		tonecode.Encode("Second one.", rate), sttSilence(100*time.Millisecond, rate))

	// The pause is longer than the default endpointing silence (0.8 s): the first
	// utterance is final before finalize, the second one after flush_done.
	conn := h.sttOpen(sttQuery("pcm_s16le", rate))
	sttSendAudio(t, conn, sttEncode(t, "pcm_s16le", clip), sttChunk("pcm_s16le", rate))
	sttSendText(t, conn, "finalize")
	events := sttReadUntil(t, conn, "flush_done")
	events = append(events, readEvent(t, conn))
	if got := strings.Join(sttFinals(events), "|"); got != "First one.|Second one." {
		t.Errorf("finals %q, want each utterance once", got)
	}
	if types := strings.Join(sttTypes(events), " "); !strings.HasSuffix(types,
		"final interim interim flush_done final") {
		t.Errorf("events %s", types)
	}

	// With a longer endpointing silence both wait for finalize and share one final.
	conn = h.sttOpen(sttQuery("pcm_s16le", rate, "max_silence_duration_secs", "2"))
	sttSendAudio(t, conn, sttEncode(t, "pcm_s16le", clip), sttChunk("pcm_s16le", rate))
	sttSendText(t, conn, "finalize")
	events = sttReadUntil(t, conn, "flush_done")
	events = append(events, readEvent(t, conn))
	if got := strings.Join(sttFinals(events), "|"); got != "First one. Second one." {
		t.Errorf("finals %q, want both utterances in one final", got)
	}
}

func TestSTTWebSocketReportsSilenceAndNoiseHonestly(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 16000
	tests := map[string]struct {
		clip     []float32
		segments [][2]float64
	}{
		"silence": {clip: sttSilence(time.Second, rate)},
		"noise": {
			clip: sttClip(sttSilence(300*time.Millisecond, rate),
				sttNoise(500*time.Millisecond, rate, 0.2), sttSilence(200*time.Millisecond, rate)),
			segments: [][2]float64{{0.3, 0.8}},
		},
		"quiet noise under min_volume": {
			clip: sttNoise(time.Second, rate, 0.002),
		},
	}
	for name, tt := range tests {
		conn := h.sttOpen(sttQuery("pcm_s16le", rate))
		sttSendAudio(t, conn, sttEncode(t, "pcm_s16le", tt.clip), sttChunk("pcm_s16le", rate))
		sttSendText(t, conn, "finalize")
		sttReadUntil(t, conn, "flush_done")
		final := readEvent(t, conn)

		note, _ := final["emulator"].(map[string]any)
		if final["text"] != "" || final["duration"] != 1.0 || note == nil || note["tone_code"] != false {
			t.Fatalf("%s: final %v, want empty text, duration 1 and the emulator note", name, final)
		}
		segments := note["speech_segments"].([]any)
		if len(segments) != len(tt.segments) {
			t.Fatalf("%s: segments %v, want %v", name, segments, tt.segments)
		}
		for i, s := range segments {
			seg := s.(map[string]any)
			start, end := seg["start"].(float64), seg["end"].(float64)
			if math.Abs(start-tt.segments[i][0]) > 0.011 || math.Abs(end-tt.segments[i][1]) > 0.011 ||
				math.Abs(seg["duration"].(float64)-(end-start)) > 0.001 {
				t.Errorf("%s: segment %v, want %v", name, seg, tt.segments[i])
			}
		}
	}
}

func TestSTTWebSocketMinVolumeSetsTheSpeechThreshold(t *testing.T) {
	h := streamHarness(t, nil)
	const rate = 8000
	clip := sttClip(sttNoise(500*time.Millisecond, rate, 0.05), sttSilence(200*time.Millisecond, rate))
	for volume, segments := range map[string]int{"0.01": 1, "0.2": 0} {
		conn := h.sttOpen(sttQuery("pcm_mulaw", rate, "min_volume", volume))
		sttSendAudio(t, conn, sttEncode(t, "pcm_mulaw", clip), sttChunk("pcm_mulaw", rate))
		sttSendText(t, conn, "finalize")
		sttReadUntil(t, conn, "flush_done")
		final := readEvent(t, conn)
		got := final["emulator"].(map[string]any)["speech_segments"].([]any)
		if len(got) != segments {
			t.Errorf("min_volume %s: segments %v, want %d", volume, got, segments)
		}
	}
}

func TestSTTWebSocketFinalizeWithoutAudioIsAnEmptyFinal(t *testing.T) {
	h := streamHarness(t, nil)
	conn := h.sttOpen(sttQuery("pcm_s16le", 16000))
	sttSendText(t, conn, "finalize")
	events := []obj{readEvent(t, conn), readEvent(t, conn)}
	if types := strings.Join(sttTypes(events), " "); types != "flush_done final" ||
		events[1]["text"] != "" || events[1]["duration"] != 0.0 {
		t.Errorf("events %v", events)
	}
}

func TestSTTWebSocketBadQueryIsAnErrorEventThenClose(t *testing.T) {
	h := streamHarness(t, nil)
	tests := []struct {
		name, query, code, fragment string
	}{
		{"no model", sttQuery("pcm_s16le", 16000, "model", ""), codeInvalidRequest, "model"},
		{"sonic model", sttQuery("pcm_s16le", 16000, "model", "sonic-3"), codeModelNotFound,
			"sonic-3"},
		{"no encoding", sttQuery("", 16000, "encoding", ""), codeInvalidRequest, "encoding"},
		{"mp3 encoding", sttQuery("mp3", 16000), codeInvalidRequest, "pcm_s16le"},
		{"no sample_rate", sttQuery("pcm_s16le", 0, "sample_rate", ""), codeInvalidRequest,
			"sample_rate"},
		{"rate not a number", sttQuery("pcm_s16le", 0, "sample_rate", "16k"), codeInvalidRequest,
			"integer"},
		{"rate too low for tones", sttQuery("pcm_s16le", 4000), codeUnsupported, "8000"},
		{"rate too high", sttQuery("pcm_s16le", 384000), codeInvalidRequest, "192000"},
		{"language", sttQuery("pcm_s16le", 16000, "language", "english"), codeInvalidRequest,
			"ISO-639-1"},
		{"min_volume", sttQuery("pcm_s16le", 16000, "min_volume", "2"), codeInvalidRequest,
			"min_volume"},
		{"max silence", sttQuery("pcm_s16le", 16000, "max_silence_duration_secs", "0"),
			codeInvalidRequest, "max_silence_duration_secs"},
		{"too many keyterms", sttQuery("pcm_s16le", 16000) + strings.Repeat("&keyterm=a", 101),
			codeInvalidRequest, "key terms"},
		{"keyterms too long", sttQuery("pcm_s16le", 16000) + "&keyterm=" +
			strings.Repeat("a", 1201), codeInvalidRequest, "1200"},
	}
	for _, tt := range tests {
		conn := h.sttOpen(tt.query)
		ev := readEvent(t, conn)
		wantErrorEvent(t, ev, false, 400, tt.code, tt.fragment)
		wantClose(t, conn, websocket.StatusNormalClosure, tt.code)
	}
}

func TestSTTWebSocketErrorEventFollowsTheVersion(t *testing.T) {
	h := streamHarness(t, nil)
	header := http.Header{"Authorization": {"Bearer " + testKey},
		"Cartesia-Version": {"2025-04-16"}}
	conn := h.mustOpen("/stt/websocket?"+sttQuery("pcm_s16le", 16000, "model", ""), header)
	wantErrorEvent(t, readEvent(t, conn), true, 400, codeInvalidRequest, "model")
}

func TestSTTWebSocketUnknownTextIsAnError(t *testing.T) {
	h := streamHarness(t, nil)
	conn := h.sttOpen(sttQuery("pcm_s16le", 16000))
	sttSendText(t, conn, `{"type":"finalize"}`)
	wantErrorEvent(t, readEvent(t, conn), false, 400, codeInvalidRequest, "finalize")
	wantClose(t, conn, websocket.StatusNormalClosure, codeInvalidRequest)
}

func TestSTTWebSocketClosesWhenIdle(t *testing.T) {
	h := streamHarness(t, func(c *Config) { c.STTIdle = 50 * time.Millisecond })
	conn := h.sttOpen(sttQuery("pcm_s16le", 16000))
	wantClose(t, conn, websocket.StatusNormalClosure, idleReason)
}

func TestSTTWebSocketReadLimitFitsOneSecondChunksAtAnyRate(t *testing.T) {
	h := streamHarness(t, nil)
	const text = "big chunks"

	// One-second chunks at the highest rate and widest encoding are accepted...
	const rate = 192000
	clip := sttClip(tonecode.Encode(text, rate), sttSilence(50*time.Millisecond, rate))
	conn := h.sttOpen(sttQuery("pcm_f32le", rate))
	sttSendAudio(t, conn, sttEncode(t, "pcm_f32le", clip), rate*4)
	sttSendText(t, conn, "finalize")
	sttReadUntil(t, conn, "flush_done")
	if final := readEvent(t, conn); final["text"] != text {
		t.Errorf("final %v", final)
	}

	// ...and a message over the limit closes the connection with 1009.
	conn = h.sttOpen(sttQuery("pcm_mulaw", 8000))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = conn.Write(ctx, websocket.MessageBinary, make([]byte, sttMinReadLimit+1))
	wantClose(t, conn, websocket.StatusMessageTooBig, "")
}

func TestSTTWebSocketCredentialsAtTheUpgrade(t *testing.T) {
	h := streamHarness(t, nil)
	path := "/stt/websocket?" + sttQuery("pcm_s16le", 16000)
	sttToken := h.mint(`{"stt":true}`, 60)
	ttsToken := h.mint(`{"tts":true}`, 60)
	version := http.Header{"Cartesia-Version": {testVersion}}

	accepted := map[string]struct {
		path   string
		header http.Header
	}{
		"API key header":         {path, nil},
		"stt token header":       {path, bearer2(sttToken)},
		"stt token in the query": {path + "&access_token=" + sttToken, version},
		"API key in the query":   {path + "&api_key=" + testKey, version},
		"version in the query": {path + "&cartesia_version=" + testVersion + "&api_key=" +
			testKey, http.Header{}},
	}
	for name, tt := range accepted {
		conn, _, err := h.openSocket(tt.path, tt.header)
		if err != nil {
			t.Errorf("%s: refused: %v", name, err)
			continue
		}
		sttSendText(t, conn, "finalize")
		if ev := readEvent(t, conn); ev["type"] != "flush_done" {
			t.Errorf("%s: first event %v", name, ev)
		}
		conn.Close(websocket.StatusNormalClosure, "")
	}

	refused := []struct {
		name   string
		path   string
		header http.Header
		status int
		code   string
	}{
		{"tts-only token", path, bearer2(ttsToken), 403, codeInsufficientGrant},
		{"tts-only token in the query", path + "&access_token=" + ttsToken, version, 403,
			codeInsufficientGrant},
		{"no credentials", path, version, 401, codeUnauthorized},
		{"wrong key", path + "&api_key=sk_car_wrong", version, 401, codeUnauthorized},
		{"no version", path, http.Header{"Authorization": {"Bearer " + testKey}}, 400,
			codeVersionRequired},
	}
	for _, tt := range refused {
		_, resp, err := h.openSocket(tt.path, tt.header)
		t.Run(tt.name, func(t *testing.T) { wantRefused(t, resp, err, tt.status, tt.code) })
	}
}

// bearer2 is bearer as WebSocket handshake headers.
func bearer2(token string) http.Header {
	return http.Header{"Authorization": {"Bearer " + token}, "Cartesia-Version": {testVersion}}
}

func TestSTTWebSocketWithoutUpgradeIs426(t *testing.T) {
	h := streamHarness(t, nil)
	for _, path := range []string{"/stt/websocket", "/stt/turns/websocket"} {
		r := h.do(request{method: http.MethodGet, path: path + "?" + sttQuery("pcm_s16le", 16000)})
		r.wantError(t, http.StatusUpgradeRequired, codeInvalidRequest, "WebSocket")
	}
}

func TestSTTResamplerKeepsTimeAcrossChunks(t *testing.T) {
	in := make([]float32, 44100)
	for i := range in {
		in[i] = float32(i)
	}
	whole := (&sttResampler{from: 44100, to: 16000}).push(nil, in)

	r := &sttResampler{from: 44100, to: 16000}
	var pieces []float32
	for from := 0; from < len(in); from += 333 {
		pieces = r.push(pieces, in[from:min(from+333, len(in))])
	}
	if len(pieces) != len(whole) || len(whole) != 16000 {
		t.Fatalf("chunked %d samples, whole %d, want 16000", len(pieces), len(whole))
	}
	for i := range whole {
		if math.Abs(float64(pieces[i]-whole[i])) > 1e-3 ||
			math.Abs(float64(whole[i])-float64(i)*44100/16000) > 1e-2 {
			t.Fatalf("sample %d: chunked %v, whole %v, want %v", i, pieces[i], whole[i],
				float64(i)*44100/16000)
		}
	}
}

func TestSTTHalfFloatsDecode(t *testing.T) {
	tests := map[uint16]float32{0x0000: 0, 0x3C00: 1, 0xBC00: -1, 0x3800: 0.5,
		0x0001: 1.0 / (1 << 24), 0x7BFF: 65504}
	for h, want := range tests {
		if got := sttHalf(h); got != want {
			t.Errorf("sttHalf(%#04x) = %v, want %v", h, got, want)
		}
		if want >= -1 && want <= 1 && sttToHalf(want) != h {
			t.Errorf("sttToHalf(%v) = %#04x, want %#04x", want, sttToHalf(want), h)
		}
	}
	if sttDecodeSamples("pcm_f16le", []byte{0x00, 0x7E})[0] != 0 {
		t.Error("NaN must decode to 0")
	}
}
