package api

import (
	"io"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/voxgate/voxgate/server/proxy"
)

// boundBody puts every request body on a clock, on every route, and returns the writer
// the rest of the chain must use.
//
// A handler that answers without reading the body (a refusal, a 404, /healthz) would
// otherwise leave net/http waiting for that body, before and after the answer, with no
// deadline of its own: a client that announces a body and never sends it would hold the
// connection for as long as it liked. So a request with a body gets a read deadline,
// Config.BodyTimeout (for uploads proxy.DefaultUploadTimeout, which the upload tightens
// to a pause limit as it reads). And when an answer starts before the body was read to
// its end, nothing more of it is waited for: the connection is marked to close instead
// of being drained, and the deadline moves to now.
//
// Requests without a body, WebSocket upgrades among them, are left alone: a deadline on
// them would cut the hijacked socket, whose lifetime the proxy bounds itself.
func (s *server) boundBody(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if r.ContentLength == 0 || r.Body == nil || r.Body == http.NoBody {
		return w
	}

	timeout := s.cfg.BodyTimeout
	upload := s.uploadRoutes[s.routeOf(r)]
	if upload {
		timeout = proxy.DefaultUploadTimeout
	}
	rc := http.NewResponseController(w)
	_ = rc.SetReadDeadline(time.Now().Add(timeout)) // unsupported on recorders; fine

	body := &watchedBody{ReadCloser: r.Body}
	r.Body = body
	return &bodyGuard{ResponseWriter: w, rc: rc, body: body, http1: r.ProtoMajor == 1,
		upload: upload}
}

// watchedBody notes when a request body has been read to its end.
type watchedBody struct {
	io.ReadCloser
	ended atomic.Bool
}

// Read implements io.Reader.
func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.ended.Store(true)
	}
	return n, err
}

// bodyGuard is the response writer of a request with a body: when the answer starts
// before that body was read to its end, it makes sure nobody waits for the rest.
type bodyGuard struct {
	http.ResponseWriter
	rc      *http.ResponseController
	body    *watchedBody
	http1   bool
	upload  bool
	started bool
}

// WriteHeader implements http.ResponseWriter.
func (g *bodyGuard) WriteHeader(status int) {
	if status >= 200 && !g.started {
		g.started = true
		g.abandonUnreadBody(status)
	}
	g.ResponseWriter.WriteHeader(status)
}

// Write implements http.ResponseWriter.
func (g *bodyGuard) Write(p []byte) (int, error) {
	if !g.started {
		g.WriteHeader(http.StatusOK)
	}
	return g.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection (flushes, deadlines).
func (g *bodyGuard) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// abandonUnreadBody runs as the answer starts. The rest of an unread HTTP/1 body is
// still on the wire, ahead of any next request, so the connection cannot be reused;
// closing it spares the wait for that rest. Once the handler answers, only an upload
// that upstream accepted may still be reading its body (upstream may answer before the
// last byte), so except there the deadline moves to now.
func (g *bodyGuard) abandonUnreadBody(status int) {
	if g.body.ended.Load() {
		return
	}
	if g.http1 {
		g.Header().Set("Connection", "close")
	}
	if !g.upload || status >= 400 {
		_ = g.rc.SetReadDeadline(time.Now())
	}
}
