package emulator

// POST /stt (reference §5.3) and its OpenAI-compatible twin POST /audio/transcriptions
// (§5.4): one uploaded file in, one transcript out, heard the same way as the streams
// (see stt_ws.go).
//
//   - The body is multipart/form-data with the fields file (required), model (required),
//     language (default "en") and timestamp_granularities[] (repeatable; only "word",
//     which adds word timestamps). Other fields are ignored, as the OpenAI SDK may send
//     some that Cartesia documents as unsupported.
//   - The file may be a WAV in pcm_s16le, pcm_f32le, pcm_mulaw or pcm_alaw (any channel
//     count; channels are mixed down), or raw audio described by the encoding and
//     sample_rate query parameters. A WAV header wins over the query.
//   - Limitation: compressed formats that Cartesia accepts (mp3, m4a, ogg, flac, webm, ...)
//     are answered with 400 unsupported_by_emulator naming the formats the emulator reads:
//     it has no decoders for them.
//   - Limitation: the body is capped at 25 MiB (413 request_too_large), the proxy's limit,
//     where Cartesia accepts files up to 2 GB.
//   - Cartesia-Version is required on /stt and optional on /audio/transcriptions (the
//     OpenAI SDK does not send it); when present it must be a date on both.
//   - The response is {"type":"transcript","request_id","text","language","duration"}
//     plus "words" when asked for and the emulator's extra field when no tone code was
//     found. Several frames in one file are joined with one space.

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"

	"github.com/voxgate/voxgate/server/audio"
)

// sttMaxUpload is the largest request body accepted, multipart framing included.
const sttMaxUpload = 25 << 20

// sttMaxField bounds a text field of the form; the longest legitimate one is a model id.
const sttMaxField = 1 << 10

// sttReadableFormats is what the emulator can read, for error messages.
const sttReadableFormats = "WAV files (pcm_s16le, pcm_f32le, pcm_mulaw or pcm_alaw) and raw " +
	"audio described by the encoding and sample_rate query parameters (" + sttEncodingList + ")"

// sttForm is the validated multipart form of a batch request.
type sttForm struct {
	file      []byte
	model     string
	language  string
	wordTimes bool
}

// sttBatch serves POST /stt and POST /audio/transcriptions.
func (e *Emulator) sttBatch(c *call) {
	if c.versionBad && !c.checkVersion() { // optional on /audio/transcriptions, never bad
		return
	}
	encoding, rate, perr := sttAudioParams(c.r.URL.Query(), false)
	if perr != nil {
		c.failWith(perr)
		return
	}
	form, perr := readSTTForm(c)
	if perr != nil {
		c.failWith(perr)
		return
	}

	samples, rate, perr := sttFileAudio(form.file, encoding, rate)
	if perr != nil {
		c.failWith(perr)
		return
	}

	l := newSTTListener("", rate, sttDefaultVolume)
	var heard sttHeard
	heard.add(l.feedSamples(samples))
	heard.add(l.flush())

	t := sttTranscript{
		Type:      "transcript",
		RequestID: c.id,
		Text:      heard.text(),
		Duration:  sttRound(l.seconds(l.total())),
		Language:  form.language,
		Emulator:  l.note(&heard),
	}
	if form.wordTimes {
		t.Words = l.words(heard.frames)
	}
	c.logAttrs = append(c.logAttrs, slog.String("model", form.model),
		slog.Int("file_bytes", len(form.file)), slog.Int("sample_rate", rate),
		slog.Int("frames", len(heard.frames)), slog.Float64("audio_s", t.Duration))
	c.writeJSON(http.StatusOK, t)
}

// readSTTForm reads and validates the multipart body.
func readSTTForm(c *call) (*sttForm, *apiError) {
	mediaType, _, err := mime.ParseMediaType(c.r.Header.Get("Content-Type"))
	if err != nil || mediaType != "multipart/form-data" {
		return nil, badRequest("the body must be multipart/form-data with a file field")
	}
	c.r.Body = http.MaxBytesReader(c.w, c.r.Body, sttMaxUpload)
	mr, err := c.r.MultipartReader()
	if err != nil {
		return nil, badRequest("the multipart body cannot be read: %v", err)
	}

	form := &sttForm{}
	var hasFile bool
	var granularities []string
	for {
		part, err := mr.NextPart()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, sttBodyError(err)
		}

		name := part.FormName()
		limit := int64(sttMaxField)
		if name == "file" {
			limit = sttMaxUpload
		}
		data, err := io.ReadAll(io.LimitReader(part, limit+1))
		switch {
		case err != nil:
			return nil, sttBodyError(err)
		case int64(len(data)) > limit:
			return nil, badRequest("form field %s is longer than %d bytes", quote(name), limit)
		}

		switch name {
		case "file":
			form.file, hasFile = data, true
		case "model":
			form.model = string(data)
		case "language":
			form.language = string(data)
		case "timestamp_granularities[]", "timestamp_granularities":
			granularities = append(granularities, string(data))
		}
	}

	switch {
	case !hasFile:
		return nil, badRequest("the file field is required")
	case len(form.file) == 0:
		return nil, badRequest("the file is empty")
	}
	if err := sttModel(form.model, false); err != nil {
		return nil, err
	}
	var perr *apiError
	if form.language, perr = sttLanguage(form.language); perr != nil {
		return nil, perr
	}
	for _, g := range granularities {
		if g != "word" {
			return nil, badRequest("timestamp_granularities[] %s is not supported; the only "+
				"granularity is \"word\"", quote(g))
		}
		form.wordTimes = true
	}
	return form, nil
}

// sttBodyError maps a failure to read the body: too large, or malformed.
func sttBodyError(err error) *apiError {
	var tooLarge *http.MaxBytesError
	if errors.As(err, &tooLarge) {
		return &apiError{http.StatusRequestEntityTooLarge, codeTooLarge, "Request too large",
			fmt.Sprintf("the request body is larger than %d MiB", sttMaxUpload>>20)}
	}
	return badRequest("the multipart body cannot be read: %v", err)
}

// sttFileAudio decodes the uploaded file: a WAV, or raw audio in the query's encoding.
func sttFileAudio(file []byte, encoding string, rate int) ([]float32, int, *apiError) {
	if len(file) >= 12 && string(file[:4]) == "RIFF" && string(file[8:12]) == "WAVE" {
		wav, err := audio.ParseWAV(file)
		switch {
		case errors.Is(err, audio.ErrUnsupported):
			return nil, 0, &apiError{http.StatusBadRequest, codeUnsupported,
				"Unsupported by emulator", "this WAV layout cannot be read by the emulator " +
					"(" + err.Error() + "); it reads " + sttReadableFormats}
		case err != nil:
			return nil, 0, badRequest("the WAV file cannot be read: %v", err)
		case wav.SampleRate < sttMinRate || wav.SampleRate > sttMaxRate:
			return nil, 0, &apiError{http.StatusBadRequest, codeUnsupported,
				"Unsupported by emulator", fmt.Sprintf("the WAV file's rate, %d Hz, is outside "+
					"the %d to %d Hz the emulator can hear", wav.SampleRate, sttMinRate,
					sttMaxRate)}
		}
		return wav.Samples, wav.SampleRate, nil
	}

	if encoding == "" {
		what := "format it cannot identify"
		if name := sttSniff(file); name != "" {
			what = name
		}
		return nil, 0, &apiError{http.StatusBadRequest, codeUnsupported, "Unsupported by emulator",
			"the emulator cannot read this file (" + what + "); it reads " + sttReadableFormats}
	}
	if size := sttEncodings[encoding]; len(file)%size != 0 {
		return nil, 0, badRequest("the file has %d bytes, not a whole number of %d-byte %s "+
			"samples", len(file), size, encoding)
	}
	return sttDecodeSamples(encoding, file), rate, nil
}

// sttSniff names common compressed audio formats by their magic bytes, for messages.
func sttSniff(file []byte) string {
	switch {
	case bytes.HasPrefix(file, []byte("ID3")) ||
		len(file) >= 2 && file[0] == 0xFF && file[1]&0xE0 == 0xE0:
		return "MP3"
	case bytes.HasPrefix(file, []byte("OggS")):
		return "Ogg"
	case bytes.HasPrefix(file, []byte("fLaC")):
		return "FLAC"
	case bytes.HasPrefix(file, []byte{0x1A, 0x45, 0xDF, 0xA3}):
		return "WebM/Matroska"
	case len(file) >= 12 && string(file[4:8]) == "ftyp":
		return "MP4/M4A"
	case bytes.HasPrefix(file, []byte("RIFF")):
		return "RIFF but not WAVE"
	}
	return ""
}
