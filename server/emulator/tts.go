package emulator

import (
	"net/http"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/voxgate/voxgate/server/audio"
)

// The TTS request fields shared by /tts/bytes and the later SSE and WebSocket routes
// (reference §4). Unknown top-level fields are ignored: Cartesia adds optional fields
// within a version, and an emulator that rejected them would break newer clients.

// maxTranscript is the longest transcript accepted, in characters.
const maxTranscript = 10000

// ttsRequest is a validated TTS request.
type ttsRequest struct {
	ModelID    string
	Transcript string
	VoiceID    string
	Container  string // "raw" or "wav"
	Encoding   audio.Encoding
	SampleRate int
	Language   string // "" when unset
	Locale     string // "" when unset
	Volume     float64
}

// sampleRates are Cartesia's output rates.
var sampleRates = []int64{8000, 16000, 22050, 24000, 44100, 48000}

// languages are the SupportedLanguage codes of the current SDK (reference §4).
var languages = strings.Fields(`en fr de es pt zh ja hi it ko nl pl ru sv tr tl bg ro ar cs
	el fi hr ms sk da ta uk hu no vi bn th he ka id te gu kn ml mr pa or ur`)

var (
	uuidPattern = regexp.MustCompile(
		`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	// localePattern is the shape of a BCP 47 tag such as en-GB or zh-Hant-TW.
	localePattern = regexp.MustCompile(`^[A-Za-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
)

// readTTS reads and validates the JSON body of an HTTP TTS request (bytes or SSE), answering
// the error itself when it fails. The raw object comes back too, for route-specific fields.
func (c *call) readTTS() (object, *ttsRequest, bool) {
	body, ok := c.readBody(maxTTSBody)
	if !ok {
		return object{}, nil, false
	}
	req, perr := parseObject(body)
	if perr != nil {
		c.failWith(perr)
		return object{}, nil, false
	}
	t, perr := parseTTS(req)
	if perr != nil {
		c.failWith(perr)
		return object{}, nil, false
	}
	return req, t, true
}

// parseTTS validates the fields every TTS route shares.
func parseTTS(req object) (*ttsRequest, *apiError) {
	var t ttsRequest
	steps := []func(object, *ttsRequest) *apiError{
		parseModel, parseTranscript, parseVoice, parseOutputFormat, parseLanguage,
		parseGenerationConfig,
	}
	for _, step := range steps {
		if err := step(req, &t); err != nil {
			return nil, err
		}
	}
	return &t, nil
}

// parseModel accepts any sonic model id: the current ones, dated snapshots and the
// retired names all start with "sonic".
func parseModel(req object, t *ttsRequest) *apiError {
	model, present, err := req.str("model_id")
	switch {
	case err != nil:
		return err
	case !present || model == "":
		return badRequest("model_id is required, for example \"sonic-3\"")
	case !strings.HasPrefix(model, "sonic"):
		return &apiError{http.StatusBadRequest, codeModelNotFound, "Invalid model", "model_id " +
			quote(model) + ` is not a known model; use a sonic model such as "sonic-3"`}
	}
	t.ModelID = model
	return nil
}

func parseTranscript(req object, t *ttsRequest) *apiError {
	text, present, err := req.str("transcript")
	switch {
	case err != nil:
		return err
	case !present:
		return badRequest("transcript is required")
	}
	if n := utf8.RuneCountInString(text); n > maxTranscript {
		return badRequest("transcript has %d characters; the maximum is %d", n, maxTranscript)
	}
	t.Transcript = text
	return nil
}

// parseVoice accepts a bare voice id, {"id": ...} and {"mode": "id", "id": ...}.
func parseVoice(req object, t *ttsRequest) *apiError {
	if !req.has("voice") {
		return badRequest(`voice is required: a voice id, or {"mode":"id","id":"<uuid>"}`)
	}

	var id string
	if req.isString("voice") {
		id, _, _ = req.str("voice")
	} else {
		voice, _, err := req.object("voice")
		if err != nil {
			return badRequest(`voice must be a voice id string or an object such as ` +
				`{"mode":"id","id":"<uuid>"}`)
		}
		mode, present, err := voice.str("mode")
		switch {
		case err != nil:
			return err
		case present && mode == "embedding":
			return badRequest(`voice mode "embedding" is not accepted: voice embeddings are ` +
				`not supported by this API version; use {"mode":"id","id":"<uuid>"}`)
		case present && mode != "id":
			return badRequest(`voice.mode must be "id", got %s`, quote(mode))
		}
		id, present, err = voice.str("id")
		switch {
		case err != nil:
			return err
		case !present:
			return badRequest("voice.id is required")
		}
	}

	if !uuidPattern.MatchString(id) {
		return badRequest("voice id %s is not a UUID such as 6ccbfb76-1fc6-48f7-b71d-91ac6298247b",
			quote(id))
	}
	t.VoiceID = strings.ToLower(id)
	return nil
}

func parseOutputFormat(req object, t *ttsRequest) *apiError {
	format, present, err := req.object("output_format")
	switch {
	case err != nil:
		return err
	case !present:
		return badRequest(`output_format is required, for example ` +
			`{"container":"raw","encoding":"pcm_s16le","sample_rate":24000}`)
	}

	container, _, err := format.str("container")
	switch {
	case err != nil:
		return err
	case container == "mp3":
		return &apiError{http.StatusBadRequest, codeUnsupported, "Unsupported by emulator",
			"the Cartesia emulator cannot produce mp3; use container \"raw\" or \"wav\""}
	case container != "raw" && container != "wav":
		return badRequest(`output_format.container must be "raw", "wav" or "mp3", got %s`,
			quote(container))
	}

	encoding, _, err := format.str("encoding")
	if err != nil {
		return err
	}
	if !audio.Encoding(encoding).Valid() {
		return badRequest("output_format.encoding must be one of pcm_f32le, pcm_s16le, "+
			"pcm_mulaw or pcm_alaw, got %s", quote(encoding))
	}

	rate, present, err := format.integer("sample_rate")
	switch {
	case err != nil:
		return err
	case !present || !slices.Contains(sampleRates, rate):
		return badRequest("output_format.sample_rate must be one of 8000, 16000, 22050, " +
			"24000, 44100 or 48000")
	}

	t.Container, t.Encoding, t.SampleRate = container, audio.Encoding(encoding), int(rate)
	return nil
}

func parseLanguage(req object, t *ttsRequest) *apiError {
	language, hasLanguage, err := req.str("language")
	if err != nil {
		return err
	}
	locale, hasLocale, err := req.str("locale")
	if err != nil {
		return err
	}

	switch {
	case hasLanguage && hasLocale:
		return badRequest("set language or locale, not both")
	case hasLanguage && !slices.Contains(languages, language):
		return badRequest("language %s is not supported; use one of %s", quote(language),
			strings.Join(languages, ", "))
	case hasLocale && !localePattern.MatchString(locale):
		return badRequest("locale %s is not a locale tag such as en-GB", quote(locale))
	}
	t.Language, t.Locale = language, locale
	return nil
}

// parseGenerationConfig checks the documented ranges. volume scales the amplitude.
//
// Limitation: speed is validated and then ignored. The tone code has a fixed 20 ms
// symbol that its decoder relies on, so the emulator always speaks at one speed.
// emotion and other fields are accepted and ignored too.
func parseGenerationConfig(req object, t *ttsRequest) *apiError {
	t.Volume = 1
	cfg, present, err := req.object("generation_config")
	if err != nil || !present {
		return err
	}

	checks := []struct {
		key      string
		min, max float64
		dst      *float64
	}{
		{"volume", 0.5, 2.0, &t.Volume},
		{"speed", 0.6, 1.5, nil},
	}
	for _, ck := range checks {
		v, present, err := cfg.number(ck.key)
		switch {
		case err != nil:
			return err
		case !present:
			continue
		case v < ck.min || v > ck.max:
			return badRequest("%s must be between %g and %g, got %g", cfg.name(ck.key),
				ck.min, ck.max, v)
		}
		if ck.dst != nil {
			*ck.dst = v
		}
	}
	return nil
}

// quote shows client input in a message, shortened.
func quote(s string) string {
	return strconv.Quote(truncate(s, 60))
}
