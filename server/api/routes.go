package api

import (
	"net/http"

	"github.com/voxgate/voxgate/server/proxy"
	"github.com/voxgate/voxgate/server/reply"
	"github.com/voxgate/voxgate/server/token"
)

// proxyPrefix is where the Cartesia routes live on this origin.
const proxyPrefix = "/cartesia"

// routes builds the route table. Paths are registered without methods so that methods
// answers 405 in our JSON shape (ServeMux's own 405 is plain text).
func (s *server) routes() {
	mux := http.NewServeMux()

	mux.Handle("/healthz", methods{http.MethodGet: s.healthz})
	mux.Handle("/api/info", methods{http.MethodGet: s.info})
	mux.Handle("/api/login", methods{http.MethodPost: s.login})
	mux.Handle("/api/logout", methods{http.MethodPost: s.logout})
	mux.Handle("/api/session", methods{http.MethodGet: s.whoami})
	mux.Handle("/api/token", methods{http.MethodPost: s.mintToken})
	if s.directOn() {
		// Unregistered when off, so the path answers exactly like any unknown route.
		mux.Handle("/api/token/direct", methods{http.MethodPost: s.mintDirect})
	}

	s.wsRoutes, s.uploadRoutes = map[string]bool{}, map[string]bool{}
	for _, rt := range proxy.Routes() {
		pattern := proxyPrefix + rt.Path
		mux.Handle(pattern, methods{rt.Method: s.proxy.Handler(rt).ServeHTTP})
		switch rt.Kind {
		case proxy.WebSocket:
			s.wsRoutes[pattern] = true
		case proxy.Upload:
			s.uploadRoutes[pattern] = true
		}
	}

	for path := range staticFiles {
		pattern := path
		if path == "/" {
			pattern = "/{$}" // only the root itself, not every unmatched path
		}
		mux.Handle(pattern, methods{http.MethodGet: s.serveStatic(path)})
	}
	mux.HandleFunc("/", notFound)

	s.mux = mux
}

// routeOf is the mux pattern that r would be served by ("" for none).
func (s *server) routeOf(r *http.Request) string {
	_, pattern := s.mux.Handler(r)
	return pattern
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	reply.JSON(w, http.StatusOK, map[string]bool{"ok": true})
}

// info is what the page needs before sign-in: which upstream is in use (the page says so
// loudly for the emulator), which grants exist and, in direct mode only, how to reach
// the upstream directly.
func (s *server) info(w http.ResponseWriter, _ *http.Request) {
	reply.JSON(w, http.StatusOK, struct {
		Upstream string        `json:"upstream"`
		Grants   []token.Grant `json:"grants"`
		Direct   *directInfo   `json:"direct,omitempty"`
	}{s.cfg.UpstreamKind, token.Grants(), s.directInfo()})
}
