package emulator

// Speech to text (reference §5): WSS /stt/websocket (this file), WSS /stt/turns/websocket
// (stt_turns.go), POST /stt and POST /audio/transcriptions (stt_batch.go). All of them
// listen through one sttListener, defined here, so a clip is heard the same way whether
// it is streamed or uploaded.
//
// How the emulator hears:
//
//   - Audio is decoded from the declared encoding (all six of Cartesia's STT encodings:
//     pcm_s16le, pcm_s32le, pcm_f16le, pcm_f32le, pcm_mulaw, pcm_alaw) and resampled to
//     a working rate of at most 16 kHz, which keeps every tone of the tone code.
//   - An energy detector splits the audio into speech segments: 10 ms blocks whose RMS
//     is above min_volume (default 0.01, about -40 dBFS) are speech, and 100 ms below it
//     end a segment. Each segment is searched for tone-code frames (tonecode.DecodeAll),
//     and every frame found is transcribed to its exact text. Word timestamps come from
//     where the frame sits in the audio (tonecode.Timeline), in seconds from the start of
//     the stream or file.
//   - Audio without a tone code is reported honestly: text "" and an extra field
//     "emulator": {"tone_code": false, "speech_segments": [{"start","end","duration"}]}
//     listing what the energy detector heard (an energy detector: noise counts as
//     speech), plus the usual duration. It is on final transcripts, turn.end events and
//     batch responses, and absent whenever a tone code was decoded.
//   - Limitation: only the tone code is transcribed; real speech always gives text "".
//
// Choices where Cartesia's behaviour is undocumented:
//
//   - Bad query parameters on the WebSockets (model, encoding, sample_rate, ...) are
//     answered after the upgrade with an error event (status_code 400, done:true, in the
//     shape of the call's Cartesia-Version, as in Cartesia's turns example) and a close
//     1000 whose reason is the error code. Unknown commands are answered the same way,
//     and a message over the read limit (one second of audio, at least 64 KiB) closes
//     the connection with 1009. Missing
//     credentials, a bad Cartesia-Version and a token without the stt grant are refused
//     at the upgrade with the HTTP error (401/403/400), like the other routes.
//   - sample_rate must be an integer from 8000 to 192000: the tone code needs 8 kHz.
//   - Every transcript is a delta (the 4.x SDK wording): a final transcript carries the
//     text heard since the previous final one, never earlier text. Frames finalized
//     together are joined with one space; separate finals are not joined by the emulator.
//   - Endpointing: once speech has been followed by max_silence_duration_secs of silence
//     (default 0.8 s) the pending text is sent as a final transcript.
//   - After finalize the emulator sends flush_done and then the final transcript (the
//     order of Cartesia's documented example), even when the final text is "".
//   - Interim transcripts (is_final:false) are sent when speech starts (text "", nothing
//     is decoded yet) and whenever a frame has been decoded but not yet finalized.
//   - Idle close after Config.STTIdle (default 20 s) without any message: code 1000,
//     reason "connection idle timeout".

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/coder/websocket"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// registerSTT registers the speech-to-text routes.
func (e *Emulator) registerSTT() {
	e.handle("/stt/websocket", endpoint{name: "stt_websocket", methods: []string{http.MethodGet},
		needsVersion: true, auth: authGrant, grant: grantSTT, serve: e.sttWebSocket})
	e.handle("/stt/turns/websocket", endpoint{name: "stt_turns",
		methods: []string{http.MethodGet}, needsVersion: true, auth: authGrant, grant: grantSTT,
		serve: e.sttTurns})
	e.handle("/stt", endpoint{name: "stt_batch", methods: []string{http.MethodPost},
		needsVersion: true, auth: authGrant, grant: grantSTT, serve: e.sttBatch})

	// The OpenAI SDK sends no Cartesia-Version, so it is optional here (reference §5.4).
	e.handle("/audio/transcriptions", endpoint{name: "audio_transcriptions",
		methods: []string{http.MethodPost}, auth: authGrant, grant: grantSTT,
		serve: e.sttBatch})
}

// Listening parameters. Times are audio time, never wall-clock time, so a stream sent
// faster than real time is heard exactly like one sent in real time.
const (
	// sttMaxWorkRate is the highest rate the emulator listens at. The tone code stays
	// below 3.8 kHz, so 16 kHz keeps it whole while costing a third of 48 kHz.
	sttMaxWorkRate = 16000
	sttMinRate     = tonecode.MinSampleRate
	sttMaxRate     = 192000

	sttBlock           = 10 * time.Millisecond  // energy detector block
	sttHangover        = 100 * time.Millisecond // silence that ends a speech segment
	sttMargin          = 40 * time.Millisecond  // audio kept around a segment (two symbols)
	sttInterimEvery    = time.Second            // decode attempts during long speech
	sttMaxSegment      = 5 * time.Minute        // longest segment before a forced split
	sttDefaultVolume   = 0.01                   // RMS threshold, about -40 dBFS
	sttDefaultSilence  = 800 * time.Millisecond // endpointing silence
	sttMaxKeyterms     = 100                    // reference §5.1
	sttMaxKeytermChars = 1200

	// sttReadLimitAudio is the largest binary message accepted, as audio time: Cartesia
	// asks for 100 ms chunks, and ten times that leaves room for clients that batch more.
	sttReadLimitAudio = time.Second
	// sttMinReadLimit keeps room for text commands and JSON config at low rates.
	sttMinReadLimit = 64 << 10

	sttWriteTimeout = 10 * time.Second
)

// sttEncodings are Cartesia's STT encodings (reference §5.1) with their sample sizes.
var sttEncodings = map[string]int{
	"pcm_s16le": 2, "pcm_s32le": 4, "pcm_f16le": 2, "pcm_f32le": 4, "pcm_mulaw": 1,
	"pcm_alaw": 1,
}

// sttEncodingList names the encodings in messages.
const sttEncodingList = "pcm_s16le, pcm_s32le, pcm_f16le, pcm_f32le, pcm_mulaw or pcm_alaw"

// sttLanguagePattern is an ISO-639-1 code such as "en".
var sttLanguagePattern = regexp.MustCompile(`^[a-z]{2}$`)

// sttParams are the validated query parameters of the STT routes.
type sttParams struct {
	Model      string
	Encoding   string // "" only on the batch routes, when the file is a WAV
	SampleRate int
	Language   string
	MinVolume  float64
	MaxSilence time.Duration
	Keyterms   []string
}

// sttAudioParams validates encoding and sample_rate. On the WebSockets both are
// required; on the batch routes both are optional but go together.
func sttAudioParams(q url.Values, required bool) (encoding string, rate int, err *apiError) {
	encoding, rateText := q.Get("encoding"), q.Get("sample_rate")
	switch {
	case required && encoding == "":
		return "", 0, badRequest("the encoding query parameter is required: one of %s",
			sttEncodingList)
	case required && rateText == "":
		return "", 0, badRequest("the sample_rate query parameter is required, for example 16000")
	case encoding == "" && rateText == "":
		return "", 0, nil
	case encoding == "" || rateText == "":
		return "", 0, badRequest("encoding and sample_rate go together: raw audio needs both")
	}

	if _, ok := sttEncodings[encoding]; !ok {
		return "", 0, badRequest("encoding %s is not supported; use %s", quote(encoding),
			sttEncodingList)
	}
	rate64, perr := strconv.ParseInt(rateText, 10, 64)
	switch {
	case perr != nil:
		return "", 0, badRequest("sample_rate %s must be an integer number of Hz, such as 16000",
			quote(rateText))
	case rate64 > 0 && rate64 < sttMinRate:
		return "", 0, &apiError{http.StatusBadRequest, codeUnsupported, "Unsupported by emulator",
			fmt.Sprintf("sample_rate %d is below %d Hz, the lowest rate that carries the "+
				"emulator's tone code", rate64, sttMinRate)}
	case rate64 < sttMinRate || rate64 > sttMaxRate:
		return "", 0, badRequest("sample_rate must be between %d and %d Hz, got %s",
			sttMinRate, sttMaxRate, quote(rateText))
	}
	return encoding, int(rate64), nil
}

// sttModel validates a model id: any ink model, and on the turns endpoint only ink-2.
func sttModel(model string, turns bool) *apiError {
	switch {
	case model == "":
		return badRequest("the model query parameter is required, for example \"ink-whisper\"")
	case turns && model != "ink-2" && !strings.HasPrefix(model, "ink-2-"):
		return &apiError{http.StatusBadRequest, codeModelNotFound, "Invalid model",
			"model " + quote(model) + ` cannot detect turns; use "ink-2"`}
	case !strings.HasPrefix(model, "ink-"):
		return &apiError{http.StatusBadRequest, codeModelNotFound, "Invalid model",
			"model " + quote(model) + ` is not a known model; use "ink-whisper" or "ink-2"`}
	}
	return nil
}

// sttLanguage validates an optional language and returns it, "en" when unset.
func sttLanguage(language string) (string, *apiError) {
	if language == "" {
		return "en", nil
	}
	if !sttLanguagePattern.MatchString(language) {
		return "", badRequest("language %s must be an ISO-639-1 code such as \"en\"",
			quote(language))
	}
	return language, nil
}

// parseSTTStream validates the query of /stt/websocket (reference §5.1). Parameters it
// does not know are ignored, like unknown JSON fields elsewhere.
func parseSTTStream(q url.Values) (*sttParams, *apiError) {
	p := &sttParams{Model: q.Get("model"), MinVolume: sttDefaultVolume,
		MaxSilence: sttDefaultSilence}
	if err := sttModel(p.Model, false); err != nil {
		return nil, err
	}
	var err *apiError
	if p.Encoding, p.SampleRate, err = sttAudioParams(q, true); err != nil {
		return nil, err
	}
	if p.Language, err = sttLanguage(q.Get("language")); err != nil {
		return nil, err
	}

	if q.Has("min_volume") {
		v, perr := strconv.ParseFloat(q.Get("min_volume"), 64)
		if perr != nil || v < 0 || v > 1 || math.IsNaN(v) {
			return nil, badRequest("min_volume must be a number from 0 to 1, got %s",
				quote(q.Get("min_volume")))
		}
		p.MinVolume = v
	}
	if q.Has("max_silence_duration_secs") {
		v, perr := strconv.ParseFloat(q.Get("max_silence_duration_secs"), 64)
		// The duration is checked too: a tiny positive number such as 1e-300 rounds to
		// no silence at all (found by FuzzSTTQuery).
		if perr != nil || !(v > 0 && v <= 60) || time.Duration(v*float64(time.Second)) <= 0 {
			return nil, badRequest("max_silence_duration_secs must be a number of seconds "+
				"above 0 and at most 60, got %s", quote(q.Get("max_silence_duration_secs")))
		}
		p.MaxSilence = time.Duration(v * float64(time.Second))
	}
	if p.Keyterms, err = sttKeyterms(q); err != nil {
		return nil, err
	}
	return p, nil
}

// sttKeyterms validates the repeatable keyterm parameter.
//
// Limitation: key terms are validated and then ignored; the tone code needs no hints.
func sttKeyterms(q url.Values) ([]string, *apiError) {
	terms := q["keyterm"]
	if len(terms) > sttMaxKeyterms {
		return nil, badRequest("%d key terms sent; the maximum is %d", len(terms), sttMaxKeyterms)
	}
	total := 0
	for _, t := range terms {
		if strings.TrimSpace(t) == "" {
			return nil, badRequest("keyterm values must not be empty")
		}
		total += utf8.RuneCountInString(t)
	}
	if total > sttMaxKeytermChars {
		return nil, badRequest("key terms have %d characters in all; the maximum is %d",
			total, sttMaxKeytermChars)
	}
	return terms, nil
}

// sttDecodeSamples converts whole samples of encoding enc (one of sttEncodings) to
// -1..1 floats. Values that are not finite become 0 so that they cannot poison the
// detector's arithmetic.
func sttDecodeSamples(enc string, data []byte) []float32 {
	var out []float32
	switch enc {
	case "pcm_s32le":
		out = make([]float32, len(data)/4)
		for i := range out {
			out[i] = float32(float64(int32(binary.LittleEndian.Uint32(data[4*i:]))) / (1 << 31))
		}
	case "pcm_f16le":
		out = make([]float32, len(data)/2)
		for i := range out {
			out[i] = sttHalf(binary.LittleEndian.Uint16(data[2*i:]))
		}
	default:
		out, _ = audio.Decode(audio.Encoding(enc), data) // whole samples: cannot fail
	}
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			out[i] = 0
		}
	}
	return out
}

// sttHalf converts an IEEE 754 binary16 value to float32.
func sttHalf(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1F
	frac := uint32(h & 0x3FF)
	switch exp {
	case 0: // zero or subnormal: frac * 2^-24
		v := float32(frac) / (1 << 24)
		if sign != 0 {
			v = -v
		}
		return v
	case 0x1F: // infinity or NaN
		return math.Float32frombits(sign | 0x7F800000 | frac<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// sttResampler is a streaming linear resampler (downsampling only). Unlike resampling
// each chunk on its own, it keeps the position across chunks, so chunk sizes that are not
// multiples of the rate ratio never shift the audio in time.
type sttResampler struct {
	from, to int64
	next     int64   // index of the next output sample
	seen     int64   // input samples received
	last     float32 // input sample seen-1
}

// push appends to dst every output sample that the input so far determines.
func (r *sttResampler) push(dst, in []float32) []float32 {
	if r.from == r.to {
		return append(dst, in...)
	}
	end := r.seen + int64(len(in))
	at := func(k int64) float32 {
		if k < r.seen {
			return r.last // k == seen-1: the last sample of the previous chunk
		}
		return in[k-r.seen]
	}

	for {
		pos := r.next * r.from
		idx, frac := pos/r.to, pos%r.to
		if idx >= end || (idx+1 >= end && frac != 0) {
			break
		}
		v := at(idx)
		if frac != 0 {
			v += (at(idx+1) - v) * float32(frac) / float32(r.to)
		}
		dst = append(dst, v)
		r.next++
	}

	if len(in) > 0 {
		r.last = in[len(in)-1]
	}
	r.seen = end
	return dst
}

// sttFrame is a decoded tone-code frame, positioned in working-rate samples from the
// start of the stream.
type sttFrame struct {
	Text       string
	Start, End int64
}

// sttSegment is a run of audio the energy detector heard as speech.
type sttSegment struct {
	Start, End int64
}

// sttEvent is what the listener noticed while being fed.
type sttEvent struct {
	kind    sttEventKind
	frames  []sttFrame // sttFramesDecoded
	segment sttSegment // sttSegmentEnded
}

type sttEventKind int

const (
	sttSpeechStarted sttEventKind = iota
	sttFramesDecoded
	sttSegmentEnded
)

// sttListener turns audio into speech segments and decoded frames. It keeps only the
// audio it may still need to decode: the current segment and a short margin.
type sttListener struct {
	enc   string
	size  int // bytes per sample
	work  int // working rate
	rs    sttResampler
	carry []byte // bytes of a sample split across frames

	buf  []float32 // working-rate audio from sample base on
	base int64

	threshold float64
	blockLen  int
	blockSum  float64
	blockN    int

	speaking  bool
	segStart  int64 // first sample of the current segment
	voiceEnd  int64 // end of the last voiced block
	decodedTo int64 // decoding resumes here
	lastTry   int64 // end of the last decode attempt during speech
	tryGap    int64 // audio between decode attempts during speech

	margin, hangover, interimEvery, maxSegment, minFrame int64
}

// newSTTListener listens to audio of encoding enc ("" for samples fed already decoded)
// at rate Hz; threshold is the RMS above which a block counts as speech.
func newSTTListener(enc string, rate int, threshold float64) *sttListener {
	work := min(rate, sttMaxWorkRate)
	samples := func(d time.Duration) int64 { return int64(d) * int64(work) / int64(time.Second) }
	return &sttListener{
		enc:          enc,
		size:         sttEncodings[enc],
		work:         work,
		rs:           sttResampler{from: int64(rate), to: int64(work)},
		threshold:    threshold,
		blockLen:     int(samples(sttBlock)),
		margin:       samples(sttMargin),
		hangover:     samples(sttHangover),
		interimEvery: samples(sttInterimEvery),
		maxSegment:   samples(sttMaxSegment),
		minFrame:     int64(tonecode.SampleCount("", work)),
	}
}

// total is the number of working-rate samples heard so far.
func (l *sttListener) total() int64 {
	return l.base + int64(len(l.buf))
}

// seconds converts a working-rate sample position to seconds.
func (l *sttListener) seconds(pos int64) float64 {
	return float64(pos) / float64(l.work)
}

// samples converts a duration of audio to working-rate samples.
func (l *sttListener) samples(d time.Duration) int64 {
	return int64(d) * int64(l.work) / int64(time.Second)
}

// feed hears encoded bytes. A sample split across calls is completed by the next call.
func (l *sttListener) feed(data []byte) []sttEvent {
	if len(l.carry) > 0 {
		data = append(l.carry, data...)
		l.carry = nil
	}
	whole := len(data) - len(data)%l.size
	if whole < len(data) {
		l.carry = append([]byte(nil), data[whole:]...)
	}
	return l.feedSamples(sttDecodeSamples(l.enc, data[:whole]))
}

// feedSamples hears samples at the listener's input rate.
func (l *sttListener) feedSamples(in []float32) []sttEvent {
	var events []sttEvent
	from := len(l.buf)
	l.buf = l.rs.push(l.buf, in)
	for i, x := range l.buf[from:] {
		l.blockSum += float64(x) * float64(x)
		l.blockN++
		if l.blockN == l.blockLen {
			events = l.endBlock(events, l.base+int64(from+i+1))
		}
	}
	l.trim()
	return events
}

// endBlock classifies the block that ends at sample end and updates the segment state.
func (l *sttListener) endBlock(events []sttEvent, end int64) []sttEvent {
	voiced := math.Sqrt(l.blockSum/float64(l.blockN)) > l.threshold
	l.blockSum, l.blockN = 0, 0

	switch {
	case voiced && !l.speaking:
		l.speaking = true
		l.segStart = end - int64(l.blockLen)
		l.lastTry, l.tryGap = end, l.interimEvery
		l.decodedTo = max(l.decodedTo, l.segStart-l.margin, l.base)
		events = append(events, sttEvent{kind: sttSpeechStarted})
		fallthrough
	case voiced:
		l.voiceEnd = end
	}

	switch {
	case !l.speaking:
	case end-l.voiceEnd >= l.hangover:
		events = l.endSegment(events, l.voiceEnd)
	case end-l.segStart >= l.maxSegment:
		// Limitation: speech longer than five minutes without a pause is split there,
		// so a tone-code frame longer than that (over 14000 characters) is not decoded.
		events = l.endSegment(events, end)
	case end-l.lastTry >= l.tryGap:
		// A long utterance may hold several frames back to back; report each one soon
		// after it is complete instead of at the end of the segment.
		l.lastTry = end
		events = l.decode(events, end)
	}
	return events
}

// endSegment closes the current segment at sample end and decodes what is left of it.
func (l *sttListener) endSegment(events []sttEvent, end int64) []sttEvent {
	l.speaking = false
	events = l.decode(events, min(end+l.margin, l.total()))
	events = append(events, sttEvent{kind: sttSegmentEnded,
		segment: sttSegment{Start: l.segStart, End: end}})
	l.decodedTo = max(l.decodedTo, end)
	return events
}

// decode searches the audio from decodedTo up to sample to for complete frames.
func (l *sttListener) decode(events []sttEvent, to int64) []sttEvent {
	from := max(l.decodedTo, l.base)
	if to <= from {
		return events
	}
	found, err := tonecode.DecodeAll(l.buf[from-l.base:to-l.base], l.work)
	switch {
	case errors.Is(err, tonecode.ErrNoSignal):
		// No frame starts before the last minFrame samples: its preamble would have been
		// there whole and found. Not searching that audio again keeps long speech
		// without a tone code linear in cost.
		l.decodedTo = max(l.decodedTo, to-l.minFrame-l.margin)
		l.tryGap = l.interimEvery
		return events
	case err != nil:
		// A sync without a valid frame: most likely a frame still arriving, so the next
		// attempt searches from the same place. Doubling the wait between such attempts
		// keeps a long frame from being searched once a second (quadratic in its length);
		// the end of the segment decodes it in any case.
		l.tryGap = min(2*l.tryGap, l.maxSegment)
		return events
	}
	l.tryGap = l.interimEvery

	frames := make([]sttFrame, len(found))
	for i, f := range found {
		frames[i] = sttFrame{Text: f.Text, Start: from + int64(f.Start), End: from + int64(f.End)}
	}
	l.decodedTo = frames[len(frames)-1].End
	return append(events, sttEvent{kind: sttFramesDecoded, frames: frames})
}

// flush ends the current segment, if any, as if silence followed: finalize and close
// transcribe what has arrived.
func (l *sttListener) flush() []sttEvent {
	var events []sttEvent
	if l.speaking {
		events = l.endSegment(events, l.total())
	}
	l.trim()
	return events
}

// trim drops audio that no decode can need any more. Dropping at most about once a
// second of audio keeps the copying linear in the stream length.
func (l *sttListener) trim() {
	keep := l.total() - int64(l.blockLen) - l.margin // a segment may start in this block
	if l.speaking {
		keep = l.decodedTo
	}
	drop := keep - l.base
	if drop < l.interimEvery {
		return
	}
	n := copy(l.buf, l.buf[drop:])
	l.buf = l.buf[:n]
	l.base += drop
}

// sttHeard collects what a stretch of audio contained.
type sttHeard struct {
	frames   []sttFrame
	segments []sttSegment
}

// add records the frames and closed segments of events.
func (h *sttHeard) add(events []sttEvent) {
	for _, ev := range events {
		switch ev.kind {
		case sttFramesDecoded:
			h.frames = append(h.frames, ev.frames...)
		case sttSegmentEnded:
			h.segments = append(h.segments, ev.segment)
		}
	}
}

// empty reports whether nothing was heard.
func (h *sttHeard) empty() bool {
	return len(h.frames) == 0 && len(h.segments) == 0
}

// text joins the frames' texts. Frames are separate utterances, so one space goes
// between two of them unless either side already has whitespace there.
func (h *sttHeard) text() string {
	var b strings.Builder
	for _, f := range h.frames {
		if b.Len() > 0 && f.Text != "" {
			last, _ := utf8.DecodeLastRuneInString(b.String())
			first, _ := utf8.DecodeRuneInString(f.Text)
			if !unicode.IsSpace(last) && !unicode.IsSpace(first) {
				b.WriteByte(' ')
			}
		}
		b.WriteString(f.Text)
	}
	return b.String()
}

// sttWord is a word timestamp (reference §5.1), in seconds.
type sttWord struct {
	Word  string  `json:"word"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// sttSegmentJSON is a speech segment in the emulator's extra field, in seconds.
type sttSegmentJSON struct {
	Start    float64 `json:"start"`
	End      float64 `json:"end"`
	Duration float64 `json:"duration"`
}

// sttNote is the emulator's extra field on a transcript of audio without a tone code:
// what it heard instead, so that an empty text is not mistaken for silence.
type sttNote struct {
	ToneCode       bool             `json:"tone_code"`
	SpeechSegments []sttSegmentJSON `json:"speech_segments"`
}

// sttTranscript is a transcript message (WebSocket) or response (batch).
type sttTranscript struct {
	Type      string    `json:"type"`
	RequestID string    `json:"request_id"`
	Text      string    `json:"text"`
	IsFinal   *bool     `json:"is_final,omitempty"` // WebSocket only; deprecated in batch
	Duration  float64   `json:"duration"`
	Language  string    `json:"language,omitempty"`
	Words     []sttWord `json:"words,omitempty"`
	Emulator  *sttNote  `json:"emulator,omitempty"`
}

// words times every word of frames, from the start of the audio.
func (l *sttListener) words(frames []sttFrame) []sttWord {
	var words []sttWord
	for _, f := range frames {
		at := l.seconds(f.Start)
		for _, s := range tonecode.Timeline(f.Text) {
			words = append(words, sttWord{Word: s.Text, Start: sttRound(at + s.Start),
				End: sttRound(at + s.End)})
		}
	}
	return words
}

// note is the extra field for heard audio without a tone code; nil when there was one.
func (l *sttListener) note(h *sttHeard) *sttNote {
	if len(h.frames) > 0 {
		return nil
	}
	n := &sttNote{SpeechSegments: []sttSegmentJSON{}}
	for _, s := range h.segments {
		n.SpeechSegments = append(n.SpeechSegments, sttSegmentJSON{
			Start: sttRound(l.seconds(s.Start)), End: sttRound(l.seconds(s.End)),
			Duration: sttRound(l.seconds(s.End - s.Start))})
	}
	return n
}

// sttRound rounds seconds to milliseconds, which is all the detector can resolve.
func sttRound(s float64) float64 {
	return math.Round(s*1000) / 1000
}

// sttMessage is one message from the client, or the error that ended reading.
type sttMessage struct {
	typ  websocket.MessageType
	data []byte
	err  error
}

// sttConn is an accepted STT WebSocket: one goroutine reads, the handler's goroutine
// does everything else, including every write, so writes need no lock.
type sttConn struct {
	c      *call
	ws     *websocket.Conn
	idle   time.Duration
	ctx    context.Context
	cancel context.CancelFunc
	msgs   chan sttMessage
	stop   chan struct{} // closed when the handler stops listening
	done   chan struct{} // closed when the reader has returned

	closeCode   websocket.StatusCode
	closeReason string
}

// sttOpen parses an STT socket's query with parse and accepts the socket, with a read
// limit that fits the declared audio (the minimum when the query is bad). A bad query is
// answered on the open socket as an error event, as Cartesia does, and comes back as a nil
// *sttParams; a refused upgrade comes back as a nil *sttConn. The caller defers finish
// whenever the socket is not nil.
func (e *Emulator) sttOpen(c *call,
	parse func(url.Values) (*sttParams, *apiError)) (*sttConn, *sttParams) {
	p, perr := parse(c.r.URL.Query())
	limit := int64(sttMinReadLimit)
	if perr == nil {
		limit = sttFrameLimit(p.Encoding, p.SampleRate)
	}
	s := e.sttAccept(c, limit)
	if s == nil {
		return nil, nil
	}
	if perr != nil {
		s.fail(perr)
		return s, nil
	}
	c.logAttrs = append(c.logAttrs, slog.String("model", p.Model),
		slog.String("encoding", p.Encoding), slog.Int("sample_rate", p.SampleRate))
	return s, p
}

// sttAccept upgrades the call to a WebSocket whose messages may be up to limit bytes,
// through the emulator's shared acceptWebSocket (tts_ws.go: 426 without a handshake, any
// origin). It returns nil when the upgrade failed, which has been answered already.
func (e *Emulator) sttAccept(c *call, limit int64) *sttConn {
	ws, ok := c.acceptWebSocket(limit)
	if !ok {
		return nil
	}

	ctx, cancel := context.WithCancel(c.r.Context())
	s := &sttConn{c: c, ws: ws, idle: e.sttIdle, ctx: ctx, cancel: cancel,
		msgs: make(chan sttMessage), stop: make(chan struct{}), done: make(chan struct{}),
		closeCode: websocket.StatusNormalClosure}
	go s.read()
	return s
}

// sttFrameLimit is the message size limit for audio at rate Hz in encoding enc.
func sttFrameLimit(enc string, rate int) int64 {
	perSecond := int64(rate) * int64(sttEncodings[enc])
	return max(sttMinReadLimit, perSecond*int64(sttReadLimitAudio)/int64(time.Second))
}

// read hands the client's messages to the handler until reading fails.
func (s *sttConn) read() {
	defer close(s.done)
	for {
		typ, data, err := s.ws.Read(s.ctx)
		select {
		case s.msgs <- sttMessage{typ: typ, data: data, err: err}:
		case <-s.stop:
			return
		}
		if err != nil {
			return
		}
	}
}

// next waits for the client's next message; ok is false when the idle time passed first.
func (s *sttConn) next() (m sttMessage, ok bool) {
	timer := time.NewTimer(s.idle)
	defer timer.Stop()
	select {
	case m = <-s.msgs:
		return m, true
	case <-timer.C:
		return sttMessage{}, false
	}
}

// receive is next for the serving loops: when the stream has ended instead (the idle time
// passed, or the client went away) it records how and reports false.
func (s *sttConn) receive() (sttMessage, bool) {
	m, ok := s.next()
	switch {
	case !ok:
		s.idleClose()
		return m, false
	case m.err != nil:
		s.clientGone(m.err)
		return m, false
	}
	return m, true
}

// idleClose ends the stream after the idle time (reference §5.1: 20 s without audio).
func (s *sttConn) idleClose() {
	s.closeReason = idleReason // shared with the other WebSockets (tts_ws.go)
	s.c.logAttrs = append(s.c.logAttrs, slog.Bool("idle_timeout", true))
}

// clientGone records why reading stopped: the client closed, or the connection broke.
func (s *sttConn) clientGone(err error) {
	if code := websocket.CloseStatus(err); code != -1 {
		s.c.logAttrs = append(s.c.logAttrs, slog.Int("client_close", int(code)))
		s.closeCode = code
		return
	}
	s.c.logAttrs = append(s.c.logAttrs, slog.String("abort_reason", "read failed"))
}

// send writes v as a JSON text message.
func (s *sttConn) send(v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("emulator: encode STT message: %w", err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, sttWriteTimeout)
	defer cancel()
	if err := s.ws.Write(ctx, websocket.MessageText, data); err != nil {
		s.c.logAttrs = append(s.c.logAttrs, slog.String("abort_reason", "write failed"))
		return fmt.Errorf("emulator: write STT message: %w", err)
	}
	return nil
}

// sttSignal is a message with nothing but its type: flush_done, done, connected.
type sttSignal struct {
	Type      string `json:"type"`
	RequestID string `json:"request_id"`
}

// fail sends err as an error event in the shape of the call's Cartesia-Version (see
// streamError in tts_sse.go); the stream then closes with 1000 and the error code as the
// reason (done:true says the stream is over).
func (s *sttConn) fail(err *apiError) {
	s.c.errorCode = err.code
	_ = s.send(s.c.streamError(err, ""))
	s.closeReason = err.code
}

// finish closes the connection with the recorded code and waits for the reader, so no
// goroutine outlives the handler.
func (s *sttConn) finish() {
	close(s.stop)
	_ = s.ws.Close(s.closeCode, s.closeReason)
	s.cancel()
	<-s.done
	s.c.logAttrs = append(s.c.logAttrs, slog.Int("close_code", int(s.closeCode)))
}

// sttWebSocket serves WSS /stt/websocket (reference §5.1).
func (e *Emulator) sttWebSocket(c *call) {
	s, p := e.sttOpen(c, parseSTTStream)
	if s == nil {
		return
	}
	defer s.finish()
	if p == nil {
		return
	}

	st := &sttStream{s: s, p: p, l: newSTTListener(p.Encoding, p.SampleRate, p.MinVolume)}
	st.run()
	c.logAttrs = append(c.logAttrs, slog.Int("finals", st.finals),
		slog.Float64("audio_s", sttRound(st.l.seconds(st.l.total()))))
}

// sttStream is the state of one /stt/websocket connection.
type sttStream struct {
	s *sttConn
	p *sttParams
	l *sttListener

	regionStart int64    // first sample after the last final transcript
	heard       sttHeard // since regionStart
	finals      int
}

// run serves the client's messages until the stream ends.
func (st *sttStream) run() {
	for {
		m, ok := st.s.receive()
		if !ok {
			return
		}

		var err error
		if m.typ == websocket.MessageBinary {
			err = st.hear(st.l.feed(m.data), true)
			if err == nil {
				err = st.endpoint()
			}
		} else {
			switch string(m.data) {
			case "finalize":
				err = st.finalize()
			case "close", "done": // "done" is the 2025 docs' name for close
				_ = st.closeStream()
				return
			default:
				st.s.fail(badRequest("unknown text message %s: send audio as binary messages "+
					"and the text commands finalize or close", quote(string(m.data))))
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// hear records events and, when interim is set, reports progress as interim transcripts.
func (st *sttStream) hear(events []sttEvent, interim bool) error {
	for _, ev := range events {
		st.heard.add([]sttEvent{ev})
		if !interim || ev.kind == sttSegmentEnded {
			continue
		}
		if err := st.s.send(st.transcript(false)); err != nil {
			return err
		}
	}
	return nil
}

// endpoint sends the pending text as final once speech has been followed by
// max_silence_duration_secs of silence.
func (st *sttStream) endpoint() error {
	if st.l.speaking || len(st.heard.segments) == 0 {
		return nil
	}
	last := st.heard.segments[len(st.heard.segments)-1].End
	if st.l.total()-last < st.l.samples(st.p.MaxSilence) {
		return nil
	}
	return st.final()
}

// finalize answers the finalize command: flush_done, then the final transcript.
func (st *sttStream) finalize() error {
	_ = st.hear(st.l.flush(), false)
	if err := st.s.send(sttSignal{Type: "flush_done", RequestID: st.s.c.id}); err != nil {
		return err
	}
	return st.final()
}

// closeStream answers close (or done): the remaining transcript, done, close 1000.
func (st *sttStream) closeStream() error {
	_ = st.hear(st.l.flush(), false)
	if !st.heard.empty() || st.l.total() > st.regionStart {
		if err := st.final(); err != nil {
			return err
		}
	}
	return st.s.send(sttSignal{Type: "done", RequestID: st.s.c.id})
}

// final sends everything heard since the last final transcript as a final transcript.
func (st *sttStream) final() error {
	t := st.transcript(true)
	st.heard = sttHeard{}
	st.regionStart = st.l.total()
	st.finals++
	return st.s.send(t)
}

// transcript describes what was heard since the last final transcript.
func (st *sttStream) transcript(final bool) sttTranscript {
	t := sttTranscript{
		Type:      "transcript",
		RequestID: st.s.c.id,
		Text:      st.heard.text(),
		IsFinal:   &final,
		Duration:  sttRound(st.l.seconds(st.l.total() - st.regionStart)),
		Language:  st.p.Language,
		Words:     st.l.words(st.heard.frames),
	}
	if final {
		t.Emulator = st.l.note(&st.heard)
	}
	return t
}
