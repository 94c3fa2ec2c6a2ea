package proxy

import (
	"mime"
	"net/http"
	"strings"

	"github.com/voxgate/voxgate/server/session"
	"github.com/voxgate/voxgate/server/token"
)

// Kind says how a route's exchange is relayed.
type Kind int

const (
	// Stream is a request with a JSON body whose response is relayed as it arrives.
	Stream Kind = iota
	// Events is a request with a JSON body whose text/event-stream response is relayed
	// one event at a time, each flushed to the client as soon as it is complete.
	Events
	// Upload is a multipart/form-data request that is received whole, checked against the
	// route's Form and re-encoded into a spool (memory, then a temporary file) before
	// anything is sent upstream, and a response relayed like Stream.
	Upload
	// WebSocket is an upgrade relayed message by message on two connections: the
	// browser's, accepted here, and one dialled upstream with the token in a header.
	WebSocket
)

// Route is one forwarded endpoint: the browser-facing path (under the proxy's prefix), the
// grant whose token cookie pays for it, the one upstream path it maps to, how large a
// request body may be and which query parameters pass. Routes are fixed at build time; no
// request input picks an upstream host, and the only request input in an upstream path is
// an agent id that matched AgentID.
type Route struct {
	Method string
	// Path is a net/http ServeMux pattern path; "{agent_id}" is the one wildcard used.
	Path  string
	Grant token.Grant
	// Upstream is the upstream path; "{agent_id}" is replaced by the checked agent id.
	Upstream  string
	BodyLimit int64
	Kind      Kind
	// Query lists the query parameters copied upstream, each with how many times it may
	// appear. Every other parameter (access_token, api_key, cartesia_version, the SDK's
	// cartesia_client, anything unknown) is dropped.
	Query map[string]int
	// Types lists the media types a successful answer may carry to the browser; "type/*"
	// admits a whole family. Any other type is relayed as application/octet-stream.
	Types []string
	// Form is an Upload route's multipart allowlist.
	Form Form
}

// Form is the allowlist of an upload's multipart fields. A form that names any other
// field, repeats one more often than allowed, or does not carry exactly one File part is
// refused with 400 bad_request before anything reaches upstream.
type Form struct {
	// File is the name of the one file field.
	File string
	// Fields lists the text fields, each with how many times it may appear.
	Fields map[string]int
}

// octetStream is the media type of a success whose own type is not on the route's list:
// bytes that no browser renders or runs.
const octetStream = "application/octet-stream"

// responseType is the Content-Type relayed for a successful answer that said values.
// An allowed type keeps its parameters, re-encoded from the parsed form so that nothing
// malformed passes through.
func (rt Route) responseType(values []string) string {
	if len(values) != 1 {
		return octetStream
	}
	mt, params, err := mime.ParseMediaType(values[0])
	if err != nil {
		return octetStream
	}
	for _, allowed := range rt.Types {
		family, ok := strings.CutSuffix(allowed, "/*")
		if mt == allowed || ok && strings.HasPrefix(mt, family+"/") {
			if out := mime.FormatMediaType(mt, params); out != "" {
				return out
			}
		}
	}
	return octetStream
}

// AgentID is what an agent id must look like before it becomes part of an upstream path:
// no slash, dot, percent sign or anything else that could change the path's meaning. It
// is session.AgentID, the pattern the users file's agent lists are checked against, so
// that a listed id and a requested one can never disagree on form.
var AgentID = session.AgentID

// agentWildcard is the path wildcard holding the agent id, in Path and Upstream.
const agentWildcard = "agent_id"

// Request body limits per route family.
const (
	// ttsBodyLimit fits any realistic transcript plus options; Cartesia documents no cap.
	ttsBodyLimit = 64 << 10
	// UploadLimit caps a batch transcription upload. Cartesia accepts up to 2 GB; 25 MiB
	// is OpenAI's documented limit for the same form (the route's other name) and
	// about 13 minutes of 16 kHz 16-bit mono WAV, plenty for a page's recordings.
	UploadLimit = 25 << 20
)

// sttQuery are the parameters of /stt/websocket: model, audio format and the optional
// tuning knobs. keyterm repeats; Cartesia takes at most 100 of them.
var sttQuery = map[string]int{
	"model": 1, "encoding": 1, "sample_rate": 1, "language": 1, "min_volume": 1,
	"max_silence_duration_secs": 1, "keyterm": 100,
}

// turnsQuery are the parameters of /stt/turns/websocket: model, audio format, key terms
// and the four turn-detection thresholds.
var turnsQuery = map[string]int{
	"model": 1, "encoding": 1, "sample_rate": 1, "language": 1, "keyterm": 100,
	"turn_start_threshold": 1, "turn_eager_end_threshold": 1, "turn_end_threshold": 1,
	"turn_end_timeout_ms": 1,
}

// batchQuery are the query parameters of POST /stt (the form carries the rest).
var batchQuery = map[string]int{"encoding": 1, "sample_rate": 1}

// batchForm are the multipart fields of POST /stt and POST /audio/transcriptions, which
// Cartesia documents as identical: the file, the model, the language and the repeatable
// timestamp granularity (only "word" exists today; two leave room for one more). The
// OpenAI-only prompt, temperature and response_format are not accepted upstream either.
var batchForm = Form{File: "file", Fields: map[string]int{
	"model": 1, "language": 1, "timestamp_granularities[]": 2,
}}

// Media types each route family answers on success: audio for synthesis, an event
// stream for SSE, JSON transcripts for batch transcription.
var (
	audioTypes = []string{"audio/*", octetStream}
	eventTypes = []string{"text/event-stream"}
	jsonTypes  = []string{"application/json"}
)

// Routes is the routing table: every Cartesia endpoint that an access token can open.
func Routes() []Route {
	return []Route{
		{Method: http.MethodPost, Path: "/tts/bytes", Grant: token.TTS,
			Upstream: "/tts/bytes", BodyLimit: ttsBodyLimit, Kind: Stream, Types: audioTypes},
		{Method: http.MethodPost, Path: "/tts/sse", Grant: token.TTS,
			Upstream: "/tts/sse", BodyLimit: ttsBodyLimit, Kind: Events, Types: eventTypes},
		{Method: http.MethodGet, Path: "/tts/websocket", Grant: token.TTS,
			Upstream: "/tts/websocket", Kind: WebSocket},

		{Method: http.MethodGet, Path: "/stt/websocket", Grant: token.STT,
			Upstream: "/stt/websocket", Kind: WebSocket, Query: sttQuery},
		{Method: http.MethodGet, Path: "/stt/turns/websocket", Grant: token.STT,
			Upstream: "/stt/turns/websocket", Kind: WebSocket, Query: turnsQuery},
		{Method: http.MethodPost, Path: "/stt", Grant: token.STT,
			Upstream: "/stt", BodyLimit: UploadLimit, Kind: Upload, Query: batchQuery,
			Types: jsonTypes, Form: batchForm},
		{Method: http.MethodPost, Path: "/audio/transcriptions", Grant: token.STT,
			Upstream: "/audio/transcriptions", BodyLimit: UploadLimit, Kind: Upload,
			Types: jsonTypes, Form: batchForm},

		{Method: http.MethodGet, Path: "/agents/stream/{" + agentWildcard + "}",
			Grant: token.Agent, Upstream: "/agents/stream/{" + agentWildcard + "}",
			Kind: WebSocket},
	}
}
