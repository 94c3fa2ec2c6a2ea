// Package emulator is an offline stand-in for Cartesia's HTTP API, used as voxgate's
// upstream when no API key is configured and as the contract fake in tests. It follows
// the public contract written up in the project's Cartesia reference (access tokens,
// Cartesia-Version handling, error shapes, TTS); its speech is the tone code of package
// tonecode, so whatever it "says" can be decoded back to the exact transcript.
//
// Routes: GET / (no auth); POST /access-token (API key only); with the API key or an
// access token carrying the route's grant: POST /tts/bytes and /tts/sse and WSS
// /tts/websocket (tts), WSS /stt/websocket and /stt/turns/websocket, POST /stt and
// /audio/transcriptions (stt), WSS /agents/stream/{agent_id} (agent). WebSockets also take
// the credential from the access_token (or api_key) query, as browsers must. Each route
// family lives in its own file and shares the request plumbing in call.go, auth.go and
// errors.go.
//
// Where Cartesia's behaviour is undocumented the emulator makes a documented choice:
//
//   - Cartesia-Version is required on every route except GET / (the docs call it
//     mandatory); it may come from the header or the cartesia_version query parameter,
//     and the query wins. It must be a real YYYY-MM-DD date; later dates are accepted.
//   - Errors for versions >= 2026-03-01, and for requests whose version is missing or
//     malformed, are JSON {"error_code","title","message","request_id"}; older versions
//     get plain text "Title: Message".
//   - Every response carries the header cartesia-request-id (a UUID v4).
//
// Error codes are the emulator's own where Cartesia's are unknown:
//
//	400 version_required     Cartesia-Version missing
//	400 invalid_version      Cartesia-Version not a YYYY-MM-DD date
//	400 invalid_request      a body that breaks the contract (the message names the field)
//	400 model_not_found      model_id is not a sonic model
//	400 unsupported_by_emulator  valid for Cartesia, impossible here (mp3 output)
//	401 unauthorized         credentials missing, malformed or unknown
//	401 token_expired        an access token past its exp
//	403 api_key_required     an access token on a route that needs the API key
//	403 insufficient_grant   an access token without the route's grant
//	404 not_found            no such route
//	405 method_not_allowed   the route exists with other methods (see Allow)
//	413 request_too_large    body over the route's limit
//	500 internal_error       a bug in the emulator
//
// Browsers may call it from any origin, as in voxgate's direct mode: every answer to a
// request with an Origin header carries Access-Control-Allow-Origin: * (never with
// credentials), a CORS preflight on any path gets 204 without authentication, and the
// WebSocket routes accept any Origin (see cors.go).
//
// The emulator never opens a connection of its own and never logs an API key, a token or
// a query string.
package emulator

import (
	"cmp"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"strings"
	"time"
)

// Version is the newest Cartesia-Version the emulator knows; GET / reports it.
const Version = "2026-08-14"

// structuredErrorsSince is the first Cartesia-Version with JSON error bodies (reference §7).
const structuredErrorsSince = "2026-03-01"

// Config configures an Emulator.
type Config struct {
	APIKeys []string         // accepted API keys (X-API-Key or Authorization: Bearer); at least one
	Now     func() time.Time // nil: time.Now; token iat/exp use it
	Pace    float64          // 0 = as fast as possible; 1 = real time; 0.5 = twice real time
	Logger  *slog.Logger     // nil: discard

	// Idle closes for the WebSocket routes; zero means Cartesia's documented values
	// (TTS 5 min, STT 20 s, agent 180 s). Tests shorten them.
	TTSIdle, STTIdle, AgentIdle time.Duration
}

// Emulator serves the emulated Cartesia API. It is safe for concurrent use.
type Emulator struct {
	keys   [][sha256.Size]byte // digests of the accepted API keys, compared in constant time
	tokens *issuer
	now    func() time.Time
	pace   float64
	log    *slog.Logger
	mux    *http.ServeMux

	// Idle closes of the WebSocket routes, defaults filled in (see Config).
	ttsIdle, sttIdle, agentIdle time.Duration
}

// New returns an emulator that accepts cfg.APIKeys. It fails without keys, with an empty
// key, or with a negative pace.
func New(cfg Config) (*Emulator, error) {
	if len(cfg.APIKeys) == 0 {
		return nil, errors.New("emulator: at least one API key is required")
	}
	keys := make([][sha256.Size]byte, 0, len(cfg.APIKeys))
	for i, k := range cfg.APIKeys {
		if strings.TrimSpace(k) == "" || strings.ContainsAny(k, " \t\r\n") {
			return nil, fmt.Errorf("emulator: API key %d is empty or contains whitespace", i)
		}
		keys = append(keys, sha256.Sum256([]byte(k)))
	}
	if cfg.Pace < 0 || math.IsNaN(cfg.Pace) || math.IsInf(cfg.Pace, 0) {
		return nil, fmt.Errorf("emulator: pace %v must be a finite number >= 0", cfg.Pace)
	}

	if cfg.TTSIdle < 0 || cfg.STTIdle < 0 || cfg.AgentIdle < 0 {
		return nil, errors.New("emulator: idle durations must be >= 0 (0 means the default)")
	}

	e := &Emulator{
		keys:   keys,
		tokens: newIssuer(),
		now:    cfg.Now,
		pace:   cfg.Pace,
		log:    cfg.Logger,
		mux:    http.NewServeMux(),
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	e.ttsIdle = cmp.Or(cfg.TTSIdle, 5*time.Minute)
	e.sttIdle = cmp.Or(cfg.STTIdle, 20*time.Second)
	e.agentIdle = cmp.Or(cfg.AgentIdle, 180*time.Second)
	e.routes()
	return e, nil
}

// routes registers every route family. Later families (SSE, WebSockets, STT, agents) add
// their lines here and their handlers in their own files.
func (e *Emulator) routes() {
	e.handle("/{$}", endpoint{name: "info", methods: []string{http.MethodGet},
		serve: e.info})
	e.handle("/access-token", endpoint{name: "access_token", methods: []string{http.MethodPost},
		needsVersion: true, auth: authAPIKey, serve: e.accessToken})
	e.handle("/tts/bytes", endpoint{name: "tts_bytes", methods: []string{http.MethodPost},
		needsVersion: true, auth: authGrant, grant: grantTTS, serve: e.ttsBytes})

	// Slice 2 (one file per family): tts_sse.go, tts_ws.go, agent.go (TTS streams and the
	// agent call) and stt_ws.go, stt_turns.go, stt_batch.go (speech to text). Each family
	// registers itself from its own registerXxx method so the families never edit one line.
	e.registerTTSStreams()
	e.registerSTT()
	e.registerAgent()

	// Everything else: 404 in Cartesia's error shape rather than ServeMux's plain text.
	e.handle("/", endpoint{name: "not_found", serve: e.notFound})
}

// ServeHTTP serves one request of the emulated API. CORS comes first (see cors.go): a
// preflight is answered before any route, method, version or credential check.
func (e *Emulator) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	c := e.begin(w, r)
	defer c.finish()
	if c.cors() {
		return
	}

	e.mux.ServeHTTP(c.w, r.WithContext(withCall(r.Context(), c)))
}

func (e *Emulator) notFound(c *call) {
	c.fail(http.StatusNotFound, codeNotFound, "Not found",
		fmt.Sprintf("no route %s %s in the Cartesia API emulator", c.r.Method, c.r.URL.Path))
}
