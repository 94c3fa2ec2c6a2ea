//go:build !js

package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// serverStartTimeout bounds how long the binary may take to log "listening" and answer
// /healthz; it starts in well under a second, the rest is room for a loaded CI machine.
const serverStartTimeout = 15 * time.Second

// logLine is one line the server wrote to stderr: the raw text and, when it is JSON (it is
// with LOG_FORMAT=json), its fields.
type logLine struct {
	Raw    string
	Fields map[string]any
}

// Msg is the slog message of the line, "" for a line that is not JSON.
func (l logLine) Msg() string {
	s, _ := l.Fields["msg"].(string)
	return s
}

// Str returns a string field of the line, "" when absent.
func (l logLine) Str(key string) string {
	s, _ := l.Fields[key].(string)
	return s
}

// server is a running bin/server with every stderr line it has written so far.
type server struct {
	URL      string // http://127.0.0.1:port, from the "listening" log event
	User     string
	Password string

	cmd     *exec.Cmd
	stdout  bytes.Buffer // for people: URL and demo credentials; never asserted on
	exited  chan struct{}
	stopped sync.Once

	mu    sync.Mutex
	lines []logLine
}

// startServer runs $VOXGATE_BIN on 127.0.0.1:0 with the emulator upstream and a random demo
// password, waits until it listens and is healthy, and stops it when the test ends.
func startServer(t *testing.T, env ...string) *server {
	t.Helper()
	bin := serverBinary(t)

	s := &server{User: "demo", Password: "e2e-" + randomHex(t, 12), exited: make(chan struct{})}

	// A clean environment: the developer's CARTESIA_API_KEY, UPSTREAM_URL or USERS_FILE
	// must not turn this test into calls to the real API.
	s.cmd = exec.Command(bin)
	s.cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + t.TempDir(),
		"ADDR=127.0.0.1:0",
		"LOG_FORMAT=json",
		"DEMO_USER=" + s.User,
		"DEMO_PASSWORD=" + s.Password,
		"EMULATOR_PACE=0",
	}, env...)
	s.cmd.Stdout = &lockedWriter{mu: &s.mu, w: &s.stdout}
	stderr, err := s.cmd.StderrPipe()
	if err != nil {
		t.Fatalf("server: stderr pipe: %v", err)
	}
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("server: start %s: %v", bin, err)
	}

	go s.readLog(stderr)
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			s.dump(t)
		}
	})

	isListening := func(l logLine) bool { return l.Msg() == "listening" }
	listening := s.waitLine(t, serverStartTimeout, isListening)
	s.URL = listening.Str("url")
	u, err := url.Parse(s.URL)
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" {
		t.Fatalf("server: listening url %q is not http://127.0.0.1:port", s.URL)
	}
	s.waitHealthy(t)
	return s
}

// serverBinary finds the binary to test or skips (fails under E2E_REQUIRED=1).
func serverBinary(t *testing.T) string {
	t.Helper()
	bin := os.Getenv("VOXGATE_BIN")
	if bin == "" {
		bin = filepath.Join("..", "..", "bin", "server")
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		t.Fatalf("server: resolve %s: %v", bin, err)
	}

	// Stat also makes the go test cache depend on the binary: a rebuilt server re-runs
	// these tests instead of replaying a cached pass.
	info, err := os.Stat(abs)
	if err != nil || info.IsDir() {
		missing(t, fmt.Sprintf("server binary %s not found (run make build or set VOXGATE_BIN)", abs))
	}
	return abs
}

// missing skips the test for an absent prerequisite, or fails it when E2E_REQUIRED=1.
func missing(t *testing.T, what string) {
	t.Helper()
	if os.Getenv("E2E_REQUIRED") == "1" {
		t.Fatalf("E2E_REQUIRED=1 but %s", what)
	}
	t.Skip(what)
}

func (s *server) readLog(r interface{ Read([]byte) (int, error) }) {
	defer close(s.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := logLine{Raw: sc.Text()}
		if err := json.Unmarshal(sc.Bytes(), &line.Fields); err != nil {
			line.Fields = nil
		}
		s.mu.Lock()
		s.lines = append(s.lines, line)
		s.mu.Unlock()
	}
}

// Stop ends the server (SIGINT first, for a graceful shutdown that flushes its log) and
// waits until its stderr is drained. It is safe to call more than once.
func (s *server) Stop() {
	s.stopped.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		_ = s.cmd.Wait()
	})
}

// Lines returns a copy of every log line so far.
func (s *server) Lines() []logLine {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]logLine(nil), s.lines...)
}

// Mark returns the number of log lines so far, to look only at what comes after it.
func (s *server) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// Since returns the log lines written after mark.
func (s *server) Since(mark int) []logLine {
	return s.Lines()[mark:]
}

// waitLine waits for a log line matching match and returns it; it fails the test when the
// server exits or the timeout passes first.
func (s *server) waitLine(t *testing.T, timeout time.Duration, match func(logLine) bool) logLine {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		for _, l := range s.Lines() {
			if match(l) {
				return l
			}
		}
		select {
		case <-s.exited:
			t.Fatalf("server: exited before the expected log line")
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("server: no matching log line within %s", timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitCount waits until count(lines after mark) reaches want, and returns the lines.
func (s *server) waitCount(t *testing.T, mark, want int, timeout time.Duration,
	match func(logLine) bool) []logLine {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		lines := s.Since(mark)
		if n := countLines(lines, match); n >= want {
			return lines
		} else if time.Now().After(deadline) {
			t.Fatalf("server: %d matching log lines within %s, want %d", n, timeout, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (s *server) waitHealthy(t *testing.T) {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(serverStartTimeout)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/healthz", nil)
		resp, err := client.Do(req)
		status := 0
		if err == nil {
			status = resp.StatusCode
			resp.Body.Close()
		}
		cancel()
		if status == http.StatusOK {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("server: GET /healthz: status %d, error %v", status, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// dump writes the server's log into the test output, for failures.
func (s *server) dump(t *testing.T) {
	t.Helper()
	var b strings.Builder
	for _, l := range s.Lines() {
		b.WriteString("  ")
		b.WriteString(l.Raw)
		b.WriteByte('\n')
	}
	t.Logf("server log:\n%s", b.String())
}

func countLines(lines []logLine, match func(logLine) bool) int {
	n := 0
	for _, l := range lines {
		if match(l) {
			n++
		}
	}
	return n
}

// isMint matches the server's token_minted event for grant.
func isMint(grant string) func(logLine) bool {
	return func(l logLine) bool { return l.Msg() == "token_minted" && l.Str("grant") == grant }
}

// isProxied matches a successful proxied call for grant.
func isProxied(grant string) func(logLine) bool {
	return func(l logLine) bool {
		status, _ := l.Fields["status"].(float64)
		return l.Msg() == "proxy" && l.Str("grant") == grant && status == http.StatusOK
	}
}

// isRejected matches a proxied call for grant that did not succeed, such as a 401
// token_expired that the client then had to retry.
func isRejected(grant string) func(logLine) bool {
	return func(l logLine) bool {
		status, _ := l.Fields["status"].(float64)
		return l.Msg() == "proxy" && l.Str("grant") == grant && status != http.StatusOK
	}
}

// assertNoSecrets fails when any log line holds the password, a cookie value or a JWT.
// Call it after Stop, so that the whole log is in.
func assertNoSecrets(t *testing.T, s *server, cookieValues []string) {
	t.Helper()
	secrets := map[string]string{"the demo password": s.Password, "a JWT (eyJ)": "eyJ"}
	for i, v := range cookieValues {
		// Very short values could match by accident; sealed cookies are long.
		if len(v) >= 16 {
			secrets[fmt.Sprintf("cookie value #%d", i+1)] = v
		}
	}

	lines := s.Lines()
	if len(lines) == 0 {
		t.Fatal("server wrote no log lines at all; the leak check would prove nothing")
	}
	for i, l := range lines {
		for what, secret := range secrets {
			// The line itself is not printed: it would put the secret in the test output.
			if strings.Contains(l.Raw, secret) {
				t.Errorf("server log line %d (msg %q) contains %s", i+1, l.Msg(), what)
			}
		}
	}
}

func randomHex(t *testing.T, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// lockedWriter serialises writes from exec's stdout copier with readers of the buffer.
type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
