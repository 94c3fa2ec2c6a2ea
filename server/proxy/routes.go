package proxy

import (
	"net/http"

	"github.com/voxgate/voxgate/server/token"
)

// Kind says how a route's exchange is relayed.
type Kind int

const (
	// Stream is a request with a JSON body whose response is relayed as it arrives.
	Stream Kind = iota
)

// Route is one forwarded endpoint: the browser-facing path (under the proxy's prefix), the
// grant whose token cookie pays for it, the one upstream path it maps to, and how large a
// request body may be. Routes are fixed at build time; no request input picks an upstream.
type Route struct {
	Method    string
	Path      string
	Grant     token.Grant
	Upstream  string
	BodyLimit int64
	Kind      Kind
}

// Request body limits per route family.
const (
	// ttsBodyLimit fits any realistic transcript plus options; Cartesia documents no cap.
	ttsBodyLimit = 64 << 10
)

// Routes is the routing table. Later slices add /tts/sse, /stt, /audio/transcriptions and
// the WebSocket routes here, each with its grant, upstream path and body limit.
func Routes() []Route {
	return []Route{
		{
			Method:    http.MethodPost,
			Path:      "/tts/bytes",
			Grant:     token.TTS,
			Upstream:  "/tts/bytes",
			BodyLimit: ttsBodyLimit,
			Kind:      Stream,
		},
	}
}
