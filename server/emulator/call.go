package emulator

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"time"
)

// endpoint describes one route: what it accepts and what it requires before its handler
// runs. The checks run in the order method, version, credentials.
type endpoint struct {
	name         string   // route name in logs, e.g. "tts_bytes"
	methods      []string // allowed methods; nil allows all
	needsVersion bool     // Cartesia-Version required
	auth         authMode
	grant        string // the access-token grant the route needs (authGrant)
	serve        func(*call)
}

// call is one request in flight: the plumbing every handler shares.
type call struct {
	e       *Emulator
	w       *recorder
	r       *http.Request
	id      string    // request id, also in the cartesia-request-id header
	started time.Time // wall clock, for dur_ms only
	route   string

	version    string // the Cartesia-Version as sent ("" when missing)
	versionBad bool   // version present but not a YYYY-MM-DD date

	credential string // "api_key" or "access_token" once authenticated, for logs
	errorCode  string // the error answered, for logs
	logAttrs   []slog.Attr
}

type callKey struct{}

func withCall(ctx context.Context, c *call) context.Context {
	return context.WithValue(ctx, callKey{}, c)
}

// begin starts a call: request id header, version, timing.
func (e *Emulator) begin(w http.ResponseWriter, r *http.Request) *call {
	c := &call{
		e:       e,
		w:       &recorder{ResponseWriter: w},
		r:       r,
		id:      newUUID(),
		started: time.Now(),
		route:   "unmatched",
	}
	c.w.Header().Set("Cartesia-Request-Id", c.id)
	c.version, c.versionBad = requestVersion(r)
	return c
}

// handle registers ep under a ServeMux pattern.
func (e *Emulator) handle(pattern string, ep endpoint) {
	e.mux.HandleFunc(pattern, func(_ http.ResponseWriter, r *http.Request) {
		c := r.Context().Value(callKey{}).(*call)
		c.r = r // carries the path values of the matched pattern
		c.route = ep.name

		if ep.methods != nil && !slices.Contains(ep.methods, r.Method) {
			c.w.Header().Set("Allow", strings.Join(ep.methods, ", "))
			c.fail(http.StatusMethodNotAllowed, codeMethodNotAllowed, "Method not allowed",
				fmt.Sprintf("%s %s is not supported; use %s", r.Method, r.URL.Path,
					strings.Join(ep.methods, " or ")))
			return
		}
		if ep.needsVersion && !c.checkVersion() {
			return
		}
		if ep.auth != authNone && !c.authenticate(ep.auth, ep.grant) {
			return
		}
		ep.serve(c)
	})
}

// finish logs the call: one structured event per request, without credentials or query.
func (c *call) finish() {
	status := c.w.status
	if status == 0 {
		status = http.StatusOK // the handler wrote nothing
	}
	attrs := []slog.Attr{
		slog.String("route", c.route),
		slog.String("method", c.r.Method),
		slog.String("path", c.r.URL.Path),
		slog.Int("status", status),
		slog.Int64("dur_ms", time.Since(c.started).Milliseconds()),
		slog.String("request_id", c.id),
		slog.Int64("bytes", c.w.bytes),
	}
	if c.credential != "" {
		attrs = append(attrs, slog.String("credential", c.credential))
	}
	if c.errorCode != "" {
		attrs = append(attrs, slog.String("error_code", c.errorCode))
	}
	attrs = append(attrs, c.logAttrs...)

	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		level = slog.LevelWarn // security rejections stand out, with their reason code
	}
	c.e.log.LogAttrs(c.r.Context(), level, "emulator request", attrs...)
}

// recorder remembers the status and size of a response for the log. It unwraps to the
// original writer so http.ResponseController and WebSocket upgrades reach the connection.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *recorder) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *recorder) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// Flush sends buffered data to the client, if the underlying writer can.
func (w *recorder) Flush() {
	_ = w.FlushError()
}

// FlushError is Flush with the error kept; http.ResponseController prefers it.
func (w *recorder) FlushError() error {
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Unwrap returns the original writer (see http.ResponseController).
func (w *recorder) Unwrap() http.ResponseWriter {
	return w.ResponseWriter
}

// newUUID returns a random (version 4) UUID.
func newUUID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go 1.24+)
	b[6] = b[6]&0x0F | 0x40
	b[8] = b[8]&0x3F | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
