package sdk

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/voxgate/voxgate/scripts/testca"
	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// sdkVersion is the pinned SDK; a node_modules holding another version is stale.
const sdkVersion = "4.2.0"

const (
	startTimeout = 15 * time.Second // a binary logs its URL well within this
	nodeTimeout  = 90 * time.Second // the whole Node run; it takes a few seconds
)

// speech is one tone-coded fixture the Node tests send to the STT routes.
type speech struct {
	Text       string  `json:"text"`
	File       string  `json:"file"`
	Container  string  `json:"container"` // raw or wav
	Encoding   string  `json:"encoding"`
	SampleRate int     `json:"sample_rate"`
	lead, tail float64 // seconds of silence around the code
}

// fixtures are generated here, not by the emulator, so STT is checked against audio the
// emulator's own TTS did not make. turn_s16_16k ends in silence long enough for a turn to
// end.
var fixtures = map[string]speech{
	"speech_s16_16k":  {Text: "Book a table for two.", Container: "raw", Encoding: "pcm_s16le", SampleRate: 16000, lead: 0.3, tail: 0.3},
	"speech_mulaw_8k": {Text: "Call me at 5 pm.", Container: "raw", Encoding: "pcm_mulaw", SampleRate: 8000, lead: 0.2, tail: 0.2},
	"speech_wav_16k":  {Text: "Hello, this is a test.", Container: "wav", Encoding: "pcm_s16le", SampleRate: 16000, lead: 0.25, tail: 0.25},
	"turn_s16_16k":    {Text: "Turn detection works.", Container: "raw", Encoding: "pcm_s16le", SampleRate: 16000, lead: 0.5, tail: 2.0},
}

// saved is what a Node test wrote next to an audio file it received.
type saved struct {
	File       string `json:"file"`
	Container  string `json:"container"`
	Encoding   string `json:"encoding"`
	SampleRate int    `json:"sample_rate"`
	Expect     string `json:"expect"`
}

// TestOfficialSDKAgreesWithEmulatorAndProxy is the witness: the official Cartesia SDK,
// which nobody here wrote, drives bin/emulator (API key, minted token) and bin/server's
// /cartesia proxy (cookies) over TLS; every Node test must pass, and all audio the SDK
// received must decode to the text that was asked for.
func TestOfficialSDKAgreesWithEmulatorAndProxy(t *testing.T) {
	node := requireNode(t)
	emulatorBin := binary(t, "VOXGATE_EMULATOR_BIN", "emulator")
	serverBin := binary(t, "VOXGATE_BIN", "server")

	dir := t.TempDir()
	tlsDir, inDir, outDir := mkdir(t, dir, "tls"), mkdir(t, dir, "in"), mkdir(t, dir, "out")
	certs, err := testca.New(tlsDir)
	if err != nil {
		t.Fatal(err)
	}
	writeFixtures(t, inDir)

	key := "sk_car_sdk_" + randomHex(t, 12)
	emu := start(t, "emulator", emulatorBin, []string{"-addr", "127.0.0.1:0"},
		[]string{"EMULATOR_API_KEYS=" + key, "TLS_CERT_FILE=" + certs.Cert,
			"TLS_KEY_FILE=" + certs.Key, "EMULATOR_PACE=0"},
		emulatorURL)

	password := "sdk-" + randomHex(t, 12)
	srv := start(t, "server", serverBin, nil,
		[]string{"ADDR=127.0.0.1:0", "LOG_FORMAT=json", "DEMO_USER=demo",
			"DEMO_PASSWORD=" + password, "EMULATOR_PACE=0", "TOKEN_MINT_RATE=600",
			"TLS_CERT_FILE=" + certs.Cert, "TLS_KEY_FILE=" + certs.Key},
		serverURL)

	tests := nodeTests(t)
	ctx, cancel := context.WithTimeout(context.Background(), nodeTimeout)
	defer cancel()
	// The files wait mostly on the servers (and on idle keep-alive sockets at their end), so
	// they run side by side even on two cores.
	args := append([]string{"--test", "--test-reporter=spec", "--test-concurrency=4"}, tests...)
	cmd := exec.CommandContext(ctx, node, args...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + dir,
		"NO_COLOR=1",
		// The ES-module tests take the SDK's browser path, which needs a global WebSocket.
		"NODE_OPTIONS=--experimental-websocket",
		"NODE_EXTRA_CA_CERTS=" + certs.CA,
		"VOXGATE_EMULATOR_URL=" + emu.url,
		"VOXGATE_EMULATOR_KEY=" + key,
		"VOXGATE_SERVER_URL=" + srv.url,
		"VOXGATE_USER=demo",
		"VOXGATE_PASSWORD=" + password,
		"VOXGATE_FIXTURES=" + inDir,
		"VOXGATE_OUT=" + outDir,
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("node --test failed (%v):\n%s", err, out)
		emu.dumpOnFailure(t)
		srv.dumpOnFailure(t)
	} else {
		t.Logf("node --test:\n%s", summary(out))
	}

	checkSavedAudio(t, outDir)
}

// nodeTests lists the Node test files. It reads every file in test/ because go test caches
// a passing result by the files the test itself opened: Node's reads are invisible to it.
func nodeTests(t *testing.T) []string {
	t.Helper()
	all, err := filepath.Glob(filepath.Join("test", "*"))
	if err != nil {
		t.Fatal(err)
	}
	var tests []string
	for _, f := range append(all, "package-lock.json") {
		if _, err := os.ReadFile(f); err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(f, ".test.js") || strings.HasSuffix(f, ".test.mjs") {
			tests = append(tests, f)
		}
	}
	if len(tests) == 0 {
		t.Fatal("no Node tests in test/")
	}
	return tests
}

// checkSavedAudio decodes every audio file the Node tests saved and compares its text.
func checkSavedAudio(t *testing.T, outDir string) {
	metas, _ := filepath.Glob(filepath.Join(outDir, "*.json"))
	if len(metas) == 0 {
		t.Fatal("the Node tests saved no audio to decode")
	}
	for _, m := range metas {
		name := strings.TrimSuffix(filepath.Base(m), ".json")
		t.Run("audio/"+name, func(t *testing.T) {
			var s saved
			raw, err := os.ReadFile(m)
			if err == nil {
				err = json.Unmarshal(raw, &s)
			}
			if err != nil {
				t.Fatalf("read %s: %v", m, err)
			}
			data, err := os.ReadFile(filepath.Join(outDir, s.File))
			if err != nil {
				t.Fatal(err)
			}
			got, err := decodeSpeech(data, s)
			if err != nil {
				t.Fatalf("decode %s (%d bytes): %v", s.File, len(data), err)
			}
			if got != s.Expect {
				t.Errorf("audio says %q, want %q", got, s.Expect)
			}
		})
	}
}

// decodeSpeech returns the text of every tone-code frame in the audio, joined: a context
// flushed midway may arrive as one frame per flush.
func decodeSpeech(data []byte, s saved) (string, error) {
	var samples []float32
	rate := s.SampleRate
	switch s.Container {
	case "wav":
		w, err := audio.ParseWAV(data)
		if err != nil {
			return "", fmt.Errorf("parse WAV: %w", err)
		}
		samples, rate = w.Samples, w.SampleRate
		if rate != s.SampleRate {
			return "", fmt.Errorf("WAV at %d Hz, asked for %d", rate, s.SampleRate)
		}
	case "raw":
		var err error
		if samples, err = audio.Decode(audio.Encoding(s.Encoding), data); err != nil {
			return "", fmt.Errorf("decode %s: %w", s.Encoding, err)
		}
	default:
		return "", fmt.Errorf("container %q", s.Container)
	}
	frames, err := tonecode.DecodeAll(samples, rate)
	if err != nil {
		return "", err
	}
	var text strings.Builder
	for _, f := range frames {
		text.WriteString(f.Text)
	}
	return text.String(), nil
}

// writeFixtures renders each fixture's tone code with silence around it, plus a manifest.
func writeFixtures(t *testing.T, dir string) {
	manifest := map[string]speech{}
	for name, f := range fixtures {
		code := tonecode.Encode(f.Text, f.SampleRate)
		lead, tail := int(f.lead*float64(f.SampleRate)), int(f.tail*float64(f.SampleRate))
		samples := make([]float32, lead+len(code)+tail)
		copy(samples[lead:], code)

		var data []byte
		var err error
		if f.Container == "wav" {
			f.File = name + ".wav"
			data, err = audio.EncodeWAV(audio.Encoding(f.Encoding), f.SampleRate, samples)
		} else {
			f.File = name + ".pcm"
			data, err = audio.Encode(audio.Encoding(f.Encoding), samples)
		}
		if err != nil {
			t.Fatalf("fixture %s: %v", name, err)
		}
		if err := os.WriteFile(filepath.Join(dir, f.File), data, 0o644); err != nil {
			t.Fatal(err)
		}
		manifest[name] = f
	}
	data, _ := json.Marshal(manifest)
	if err := os.WriteFile(filepath.Join(dir, "fixtures.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

// requireNode finds node and the installed, pinned SDK, or skips (fails with SDK_REQUIRED=1).
func requireNode(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		missing(t, "node is not on PATH")
	}
	pkg, err := os.ReadFile(filepath.Join("node_modules", "@cartesia", "cartesia-js", "package.json"))
	if err != nil {
		missing(t, "scripts/sdk/node_modules is not installed (run npm ci --prefix scripts/sdk)")
	}
	var meta struct {
		Version string `json:"version"`
	}
	if err := json.Unmarshal(pkg, &meta); err != nil || meta.Version != sdkVersion {
		t.Fatalf("installed @cartesia/cartesia-js is %q, want %s: run npm ci --prefix scripts/sdk",
			meta.Version, sdkVersion)
	}
	if _, err := os.Stat(filepath.Join("node_modules", "ws", "package.json")); err != nil {
		t.Fatal("node_modules lacks ws, which the SDK needs for WebSockets in Node")
	}
	return node
}

// missing skips for an absent prerequisite, or fails when SDK_REQUIRED=1.
func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("SDK_REQUIRED") == "1" {
		t.Fatalf("SDK_REQUIRED=1 but %s", what)
	}
	t.Skip(what)
}

// binary returns the binary named by env (make test sets it), or builds cmd/<name> into
// a temporary folder so `go test ./scripts/sdk/` alone never runs a stale binary.
func binary(t *testing.T, env, name string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		abs, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		// Stat makes the test cache depend on the binary: a rebuild re-runs this test.
		if info, err := os.Stat(abs); err != nil || info.IsDir() {
			t.Fatalf("%s=%s is not a file", env, p)
		}
		return abs
	}
	out := filepath.Join(t.TempDir(), name)
	build := exec.Command("go", "build", "-o", out, "github.com/voxgate/voxgate/server/cmd/"+name)
	if msg, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build %s (set %s to use a built one): %v\n%s", name, env, err, msg)
	}
	return out
}

// process is a started binary and what it printed.
type process struct {
	name string
	url  string
	cmd  *exec.Cmd
	out  *lockedBuffer
	done chan struct{}
}

// urlFinder reads the listening URL out of one line of a binary's output ("" if none).
type urlFinder func(line string) string

var emulatorLine = regexp.MustCompile(`listening on (https://127\.0\.0\.1:\d+)`)

func emulatorURL(line string) string {
	if m := emulatorLine.FindStringSubmatch(line); m != nil {
		return m[1]
	}
	return ""
}

func serverURL(line string) string {
	var e struct {
		Msg string `json:"msg"`
		URL string `json:"url"`
	}
	if json.Unmarshal([]byte(line), &e) == nil && e.Msg == "listening" &&
		strings.HasPrefix(e.URL, "https://127.0.0.1:") {
		return e.URL
	}
	return ""
}

// start runs bin with a clean environment (no developer CARTESIA_API_KEY can leak in),
// waits for its https URL and stops it (SIGINT, then kill) when the test ends.
func start(t *testing.T, name, bin string, args, env []string, find urlFinder) *process {
	t.Helper()
	p := &process{name: name, out: &lockedBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append([]string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}, env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}

	found := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			p.out.WriteLine(line)
			if u := find(line); u != "" {
				select {
				case found <- u:
				default:
				}
			}
		}
	}()
	go func() {
		_ = p.cmd.Wait() // an exit status is expected after SIGINT; the output tells the rest
		_ = pw.Close()
	}()
	t.Cleanup(func() { p.stop() })

	select {
	case p.url = <-found:
		return p
	case <-p.done:
		t.Fatalf("%s exited before listening:\n%s", name, p.out)
	case <-time.After(startTimeout):
		t.Fatalf("%s did not print an https URL within %v:\n%s", name, startTimeout, p.out)
	}
	return nil
}

func (p *process) stop() {
	_ = p.cmd.Process.Signal(os.Interrupt)
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

func (p *process) dumpOnFailure(t *testing.T) {
	t.Logf("%s output:\n%s", p.name, p.out)
}

// lockedBuffer collects output lines from a reader goroutine for failure messages.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) WriteLine(s string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.WriteString(s)
	b.buf.WriteByte('\n')
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// summary keeps the test-count lines of a passing Node run short in -v output.
func summary(out []byte) string {
	var keep []string
	for line := range strings.SplitSeq(string(out), "\n") {
		if strings.HasPrefix(line, "ℹ ") || strings.Contains(line, "✔") {
			keep = append(keep, line)
		}
	}
	return strings.Join(keep, "\n")
}

func mkdir(t *testing.T, parent, name string) string {
	p := filepath.Join(parent, name)
	if err := os.Mkdir(p, 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func randomHex(t *testing.T, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// TestLockFilePinsTheSDKWithoutRegistryAddresses keeps the npm project reproducible and
// free of any registry host: exact versions, integrity hashes, no resolved URLs.
func TestLockFilePinsTheSDKWithoutRegistryAddresses(t *testing.T) {
	var pkg struct {
		DevDependencies map[string]string `json:"devDependencies"`
	}
	readJSON(t, "package.json", &pkg)
	if v := pkg.DevDependencies["@cartesia/cartesia-js"]; v != sdkVersion {
		t.Errorf("package.json pins @cartesia/cartesia-js %q, want exactly %s", v, sdkVersion)
	}
	for name, v := range pkg.DevDependencies {
		if !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(v) {
			t.Errorf("package.json: %s %q is not an exact version", name, v)
		}
	}

	var lock struct {
		Packages map[string]struct {
			Version   string `json:"version"`
			Resolved  string `json:"resolved"`
			Integrity string `json:"integrity"`
		} `json:"packages"`
	}
	readJSON(t, "package-lock.json", &lock)
	if got := lock.Packages["node_modules/@cartesia/cartesia-js"].Version; got != sdkVersion {
		t.Errorf("package-lock.json holds @cartesia/cartesia-js %q, want %s", got, sdkVersion)
	}
	for path, p := range lock.Packages {
		if path == "" {
			continue
		}
		if p.Resolved != "" {
			t.Errorf("package-lock.json: %s records a download address", path)
		}
		if !strings.HasPrefix(p.Integrity, "sha512-") {
			t.Errorf("package-lock.json: %s has no sha512 integrity", path)
		}
	}
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err == nil {
		err = json.Unmarshal(data, v)
	}
	if err != nil {
		t.Fatalf("read %s: %v", path, err)
	}
}
