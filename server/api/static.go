package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/voxgate/voxgate/server/reply"
)

// staticFile maps a public path to a file in Config.Static and its media type. Types are
// spelled out rather than guessed from the system's MIME table, which may, for example,
// call a .ts file an MPEG transport stream.
type staticFile struct {
	name  string
	ctype string
}

var staticFiles = map[string]staticFile{
	"/":                   {"index.html", "text/html; charset=utf-8"},
	"/voxgate.js":         {"voxgate.js", "text/javascript; charset=utf-8"},
	"/app.js":             {"app.js", "text/javascript; charset=utf-8"},
	"/audio.js":           {"audio.js", "text/javascript; charset=utf-8"},
	"/panels.js":          {"panels.js", "text/javascript; charset=utf-8"},
	"/capture-worklet.js": {"capture-worklet.js", "text/javascript; charset=utf-8"},
	"/style.css":          {"style.css", "text/css; charset=utf-8"},
	"/voxgate.d.ts":       {"voxgate.d.ts", "text/plain; charset=utf-8"},
	"/wasm_exec.js":       {"dist/wasm_exec.js", "text/javascript; charset=utf-8"},
	"/voxgate.wasm":       {"dist/voxgate.wasm", "application/wasm"},
}

// brotliTwin is the pre-compressed copy of the wasm bundle written by `make build`.
const brotliTwin = "dist/voxgate.wasm.br"

// serveStatic answers one of staticFiles. The wasm bundle is served from its brotli twin
// when the client accepts br; a bundle that was never built gets a 404 that says how to
// build it.
func (s *server) serveStatic(path string) http.HandlerFunc {
	f := staticFiles[path]
	return func(w http.ResponseWriter, r *http.Request) {
		name := f.name
		h := w.Header()

		if path == "/voxgate.wasm" {
			// The answer differs by Accept-Encoding whichever file is served.
			h.Add("Vary", "Accept-Encoding")
			if acceptsBrotli(r.Header.Get("Accept-Encoding")) && exists(s.cfg.Static, brotliTwin) {
				name = brotliTwin
				h.Set("Content-Encoding", "br")
			}
		}

		data, err := fs.ReadFile(s.cfg.Static, name)
		if err != nil {
			h.Del("Content-Encoding")
			msg := "not found"
			if strings.HasPrefix(name, "dist/") {
				msg = path[1:] + " has not been built; run `make build`"
			}
			reply.Error(w, http.StatusNotFound, "not_found", msg)
			return
		}

		sum := sha256.Sum256(data)
		h.Set("Content-Type", f.ctype)
		h.Set("ETag", strconv.Quote(hex.EncodeToString(sum[:12])))
		// Revalidate every time: the ETag makes that cheap, and a rebuilt bundle is
		// picked up at once.
		h.Set("Cache-Control", "no-cache")
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(data))
	}
}

// exists reports whether name is a regular file in fsys.
func exists(fsys fs.FS, name string) bool {
	st, err := fs.Stat(fsys, name)
	return err == nil && st.Mode().IsRegular()
}

// acceptsBrotli reports whether an Accept-Encoding value allows br (explicitly or through
// *), honouring q=0 as a refusal.
func acceptsBrotli(header string) bool {
	for part := range strings.SplitSeq(header, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		coding = strings.ToLower(strings.TrimSpace(coding))
		if coding != "br" && coding != "*" {
			continue
		}
		q := 1.0
		for p := range strings.SplitSeq(params, ";") {
			k, v, ok := strings.Cut(strings.TrimSpace(p), "=")
			if ok && strings.EqualFold(strings.TrimSpace(k), "q") {
				if f, err := strconv.ParseFloat(strings.TrimSpace(v), 64); err == nil {
					q = f
				}
			}
		}
		if q > 0 {
			return true
		}
	}
	return false
}

// notFound answers 404 in the shared error shape.
func notFound(w http.ResponseWriter, _ *http.Request) {
	reply.Error(w, http.StatusNotFound, "not_found", "no such route")
}
