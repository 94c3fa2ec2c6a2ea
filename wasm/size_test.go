//go:build !js

// Package wasm_test holds the wasm client's budget checks: they build cmd/voxgate for
// GOOS=js GOARCH=wasm and measure what the browser would download.
package wasm_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/andybalholm/brotli"
)

const (
	// maxBrotliBytes is the budget for the compressed bundle. The browser downloads the
	// brotli twin: 0.92 MiB once WebSockets went through the browser's own class (jsx)
	// instead of coder/websocket, which linked net/http. The budget keeps ~15% headroom
	// over that, so a feature that adds a lot, or a dependency that drags in net/http
	// again, fails here rather than slows every first load.
	maxBrotliBytes = 106 * (1 << 20) / 100 // 1.06 MiB

	// brotliQuality is the Makefile's default BROTLI_QUALITY, used when the test has to
	// compress the bundle itself (a plain `go test` without `make build`).
	brotliQuality = 10
)

// forbiddenPackages must not be linked into the bundle at all, nor anything under them.
// net/http costs megabytes even when only its types are used (its init pulls in TLS and
// HTTP/2); coder/websocket imports it under js/wasm. The browser's fetch and WebSocket
// (package jsx) do the same jobs for a fraction of the size.
var forbiddenPackages = []string{
	"net/http",
	"github.com/coder/websocket",
}

// forbiddenSymbols are functions that only appear when net/http's client is linked: it
// costs about 5 MiB raw and pulls TLS and HTTP/2 into the bundle. They are checked in the
// linked module itself, in case a package reaches them without importing net/http.
var forbiddenSymbols = []string{
	"net/http.(*Client).do",
	"net/http.(*Client).Do",
	"net/http.(*Transport).roundTrip",
	"net/http.(*Transport).RoundTrip",
	"net/http.(*persistConn)",
	"net/http.send",
}

func TestBundleFitsTheCompressedBudget(t *testing.T) {
	// Under `make test` the bundle the server ships has just been built and compressed:
	// measure exactly that file instead of spending another quarter minute compressing.
	if shipped := os.Getenv("VOXGATE_WASM_BR"); shipped != "" {
		br, err := os.ReadFile(shipped)
		if err != nil {
			t.Fatalf("read the shipped bundle: %v", err)
		}
		t.Logf("shipped %s: %d bytes (%.2f MiB)", shipped, len(br), mib(len(br)))
		if len(br) > maxBrotliBytes {
			t.Fatalf("brotli bundle is %.2f MiB, budget %.2f MiB", mib(len(br)),
				mib(maxBrotliBytes))
		}
		return
	}

	wasm := buildBundle(t, "-trimpath", "-ldflags=-s -w")

	var compressed bytes.Buffer
	w := brotli.NewWriterLevel(&compressed, brotliQuality)
	if _, err := w.Write(wasm); err != nil {
		t.Fatalf("brotli: %v", err)
	}
	if err := w.Close(); err != nil {
		t.Fatalf("brotli: %v", err)
	}

	t.Logf("voxgate.wasm stripped: %d bytes raw (%.2f MiB), %d bytes brotli q%d (%.2f MiB)",
		len(wasm), mib(len(wasm)), compressed.Len(), brotliQuality, mib(compressed.Len()))
	if compressed.Len() > maxBrotliBytes {
		t.Fatalf("brotli bundle is %.2f MiB, budget %.2f MiB", mib(compressed.Len()),
			mib(maxBrotliBytes))
	}
}

func TestBundleLinksNoHTTPClient(t *testing.T) {
	wasm := buildBundle(t, "-trimpath") // unstripped: keeps the name section

	names, err := functionNames(wasm)
	if err != nil {
		t.Fatalf("read name section: %v", err)
	}
	if len(names) < 1000 {
		t.Fatalf("name section lists %d functions; the check would prove nothing", len(names))
	}
	for _, name := range names {
		for _, bad := range forbiddenSymbols {
			sym := wasmSymbol(bad)
			if name == sym || strings.HasPrefix(name, sym+".") { // the function or its closures
				t.Errorf("bundle links %s (%s): net/http's client is in use", bad, name)
			}
		}
		for _, pkg := range forbiddenPackages {
			sym := wasmSymbol(pkg)
			if strings.HasPrefix(name, sym+".") || strings.HasPrefix(name, sym+"_") {
				t.Errorf("bundle links %s from %s", name, pkg)
			}
		}
	}
}

// wasmSymbol spells a Go function name the way the wasm linker writes it into the name
// section: "net/http.(*Client).do" becomes "net_http.__Client_.do", and a path's "-"
// becomes "_" too.
func wasmSymbol(goName string) string {
	return strings.NewReplacer("/", "_", "-", "_", "(*", "__", ")", "_").Replace(goName)
}

func TestNoForbiddenPackageIsADependency(t *testing.T) {
	cmd := exec.Command("go", "list", "-deps", "-f",
		`{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./cmd/voxgate")
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}

	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	if len(lines) < 20 {
		t.Fatalf("go list found %d packages; the check would prove nothing", len(lines))
	}
	for _, line := range lines {
		fields := strings.Fields(line)
		for _, imp := range fields[1:] {
			if bad := forbidden(imp); bad != "" && forbidden(fields[0]) == "" {
				t.Errorf("%s imports %s: the wasm client must use the browser's fetch and "+
					"WebSocket (package jsx), never %s", fields[0], imp, bad)
			}
		}
	}
}

// forbidden returns the entry of forbiddenPackages that pkg is or lies under, or "".
func forbidden(pkg string) string {
	for _, bad := range forbiddenPackages {
		if pkg == bad || strings.HasPrefix(pkg, bad+"/") {
			return bad
		}
	}
	return ""
}

// buildBundle compiles cmd/voxgate for the browser with extra build flags.
func buildBundle(t *testing.T, flags ...string) []byte {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the wasm bundle")
	}

	out := filepath.Join(t.TempDir(), "voxgate.wasm")
	args := append([]string{"build", "-o", out}, flags...)
	cmd := exec.Command("go", append(args, "./cmd/voxgate")...)
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, msg)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// functionNames returns the function names in a wasm module's "name" custom section.
func functionNames(wasm []byte) ([]string, error) {
	if len(wasm) < 8 || !bytes.Equal(wasm[:4], []byte("\x00asm")) {
		return nil, errors.New("not a wasm module")
	}
	r := &reader{b: wasm[8:]}
	for !r.done() {
		id := r.byte()
		section := r.sub(r.uleb())
		if r.err != nil {
			return nil, r.err
		}
		if id != 0 || section.name() != "name" {
			continue
		}
		for !section.done() {
			subID := section.byte()
			sub := section.sub(section.uleb())
			if subID != 1 { // 1: function names
				continue
			}
			n := sub.uleb()
			names := make([]string, 0, n)
			for range n {
				sub.uleb() // function index
				names = append(names, sub.name())
			}
			return names, sub.err
		}
		return nil, section.err
	}
	return nil, errors.New("no name section (built with -ldflags=-s?)")
}

// reader decodes the parts of the wasm binary format the name section needs.
type reader struct {
	b   []byte
	err error
}

func (r *reader) done() bool { return r.err != nil || len(r.b) == 0 }

func (r *reader) byte() byte {
	if r.err != nil || len(r.b) == 0 {
		r.fail()
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}

func (r *reader) uleb() uint64 {
	if r.err != nil {
		return 0
	}
	v, n := binary.Uvarint(r.b) // wasm's LEB128 is the same encoding
	if n <= 0 {
		r.fail()
		return 0
	}
	r.b = r.b[n:]
	return v
}

func (r *reader) sub(n uint64) *reader {
	if r.err != nil || n > uint64(len(r.b)) {
		r.fail()
		return &reader{err: r.err}
	}
	s := &reader{b: r.b[:n]}
	r.b = r.b[n:]
	return s
}

func (r *reader) name() string {
	s := r.sub(r.uleb())
	return string(s.b)
}

func (r *reader) fail() {
	if r.err == nil {
		r.err = fmt.Errorf("truncated wasm module")
	}
}

func mib(n int) float64 { return float64(n) / (1 << 20) }
