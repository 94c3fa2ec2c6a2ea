package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// serverStartTimeout bounds how long the binary may take to listen and answer /healthz.
const serverStartTimeout = 15 * time.Second

// directGrants are the grants the direct soak asks the server to hand to the page: all of
// them, so that every kind of call goes straight to the emulator.
var directGrants = []string{"tts", "stt", "agent"}

// tokenPrefix starts every emulator access token (the base64url encoding of `{"`, the
// start of its JSON header). The soak never sees a direct token, since the page does not
// expose it, so it looks for this prefix instead: in the server's output it can only be a
// token, or a fragment of one.
const tokenPrefix = "eyJ"

// server is a running bin/server and the JSON lines it has logged so far.
type server struct {
	URL      string
	User     string
	Password string

	cmd     *exec.Cmd
	exited  chan struct{} // closed when stderr ends: the process has exited
	readers sync.WaitGroup
	stopped sync.Once

	mu    sync.Mutex
	lines []map[string]any
	leaks leaks
}

// leaks counts the lines of the server's output that carry tokenPrefix. It never holds
// the lines: only where they were and, for log events, which event it was.
type leaks struct {
	Lines  int            // stdout and stderr lines with tokenPrefix
	Events map[string]int // msg of the JSON events among them ("not json" for others)
}

// startServer runs the binary on 127.0.0.1:0 with the emulator upstream, the soak's token
// lifetime and mint rate, and a random demo password, and waits until it is healthy.
func startServer(ctx context.Context, s settings) (*server, error) {
	bin, err := filepath.Abs(s.Server)
	if err != nil {
		return nil, fmt.Errorf("soak: resolve %s: %w", s.Server, err)
	}
	if info, err := os.Stat(bin); err != nil || info.IsDir() {
		return nil, fmt.Errorf("soak: server binary %s not found (run make build)", bin)
	}
	secret := make([]byte, 12)
	if _, err := rand.Read(secret); err != nil {
		return nil, fmt.Errorf("soak: random password: %w", err)
	}
	home, err := os.MkdirTemp("", "voxgate-soak-")
	if err != nil {
		return nil, fmt.Errorf("soak: temp home: %w", err)
	}

	srv := &server{User: "demo", Password: "soak-" + hex.EncodeToString(secret),
		exited: make(chan struct{})}

	// A clean environment: a CARTESIA_API_KEY or UPSTREAM_URL in the developer's shell must
	// not turn the soak into thousands of calls to the real API.
	srv.cmd = exec.Command(bin)
	srv.cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"ADDR=127.0.0.1:0",
		"LOG_FORMAT=json",
		"DEMO_USER=" + srv.User,
		"DEMO_PASSWORD=" + srv.Password,
		"EMULATOR_PACE=0",
		fmt.Sprintf("TOKEN_TTL=%d", s.TTL),
		fmt.Sprintf("TOKEN_MINT_RATE=%d", s.MintRate),
	}
	if s.Direct {
		// The same lifetime as the proxy soak's tokens, so the two runs compare: the
		// server's default direct lifetime is the smaller of TOKEN_TTL and this.
		srv.cmd.Env = append(srv.cmd.Env,
			"DIRECT_GRANTS="+strings.Join(directGrants, ","),
			fmt.Sprintf("DIRECT_TOKEN_TTL=%d", s.TTL),
			fmt.Sprintf("DIRECT_MINT_RATE=%d", s.DirectMintRate))
	}
	// stdout carries the URL and the demo password, for people; it is read only to look
	// for tokens, like the log.
	stdout, err := srv.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("soak: server stdout: %w", err)
	}
	stderr, err := srv.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("soak: server stderr: %w", err)
	}
	if err := srv.cmd.Start(); err != nil {
		return nil, fmt.Errorf("soak: start %s: %w", bin, err)
	}
	srv.readers.Add(2)
	go func() {
		defer srv.readers.Done()
		srv.readOutput(stdout)
	}()
	go func() {
		defer srv.readers.Done()
		defer close(srv.exited)
		srv.readLog(stderr)
		_ = os.RemoveAll(home)
	}()

	if err := srv.waitListening(ctx); err != nil {
		srv.Stop()
		return nil, err
	}
	if err := srv.waitHealthy(ctx); err != nil {
		srv.Stop()
		return nil, err
	}
	if s.Direct {
		if err := srv.checkDirectOffer(ctx, s.TTL); err != nil {
			srv.Stop()
			return nil, err
		}
	}
	return srv, nil
}

// readLog keeps the server's JSON log events and counts every line with a token in it.
func (s *server) readLog(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var fields map[string]any
		isEvent := json.Unmarshal(sc.Bytes(), &fields) == nil
		s.mu.Lock()
		if bytes.Contains(sc.Bytes(), []byte(tokenPrefix)) {
			event := "not json"
			if msg, ok := fields["msg"].(string); ok && isEvent {
				event = msg
			}
			s.leaks.add(event)
		}
		if isEvent {
			s.lines = append(s.lines, fields)
		}
		s.mu.Unlock()
	}
}

// readOutput reads the server's stdout only to count lines with a token in them.
func (s *server) readOutput(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		if bytes.Contains(sc.Bytes(), []byte(tokenPrefix)) {
			s.mu.Lock()
			s.leaks.add("stdout")
			s.mu.Unlock()
		}
	}
	_, _ = io.Copy(io.Discard, r) // a line over the buffer: keep the pipe from filling
}

func (l *leaks) add(where string) {
	if l.Events == nil {
		l.Events = map[string]int{}
	}
	l.Lines++
	l.Events[where]++
}

// Leaks is what the output has shown of tokens so far.
func (s *server) Leaks() leaks {
	s.mu.Lock()
	defer s.mu.Unlock()
	l := leaks{Lines: s.leaks.Lines, Events: map[string]int{}}
	for k, v := range s.leaks.Events {
		l.Events[k] = v
	}
	return l
}

// checkDirectOffer reads GET /api/info as the page does and checks that the server offers
// direct mode for every grant, with the soak's lifetime, and that the upstream the pages
// will call is the built-in emulator on loopback: the direct soak sends its calls nowhere
// else.
func (s *server) checkDirectOffer(ctx context.Context, ttl int) error {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/api/info", nil)
	if err != nil {
		return fmt.Errorf("soak: info request: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("soak: GET /api/info: %w", err)
	}
	defer resp.Body.Close()
	var info struct {
		Upstream string `json:"upstream"`
		Direct   *struct {
			Grants   []string `json:"grants"`
			Upstream string   `json:"upstream"`
			MaxTTL   int      `json:"max_ttl"`
		} `json:"direct"`
	}
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("soak: GET /api/info answered %d", resp.StatusCode)
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64*1024)).Decode(&info); err != nil {
		return fmt.Errorf("soak: decode /api/info: %w", err)
	}
	d := info.Direct
	switch {
	case info.Upstream != "emulator":
		return fmt.Errorf("soak: the upstream is %q, not the built-in emulator", info.Upstream)
	case d == nil:
		return fmt.Errorf("soak: the server does not offer direct mode (no \"direct\" in /api/info)")
	case !slices.Equal(d.Grants, directGrants):
		return fmt.Errorf("soak: direct grants %v, want %v", d.Grants, directGrants)
	case d.MaxTTL != ttl:
		return fmt.Errorf("soak: direct max_ttl %d, want %d", d.MaxTTL, ttl)
	}
	u, err := url.Parse(d.Upstream)
	if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" {
		return fmt.Errorf("soak: the direct upstream is %q, not http://127.0.0.1:port", d.Upstream)
	}
	return nil
}

// waitListening takes the URL from the server's "listening" event and checks it is a
// loopback address: the soak sends nothing anywhere else.
func (s *server) waitListening(ctx context.Context) error {
	deadline := time.Now().Add(serverStartTimeout)
	for {
		for _, l := range s.Since(0) {
			if l["msg"] != "listening" {
				continue
			}
			raw, _ := l["url"].(string)
			u, err := url.Parse(raw)
			if err != nil || u.Scheme != "http" || u.Hostname() != "127.0.0.1" {
				return fmt.Errorf("soak: the server listens on %q, not http://127.0.0.1:port", raw)
			}
			s.URL = raw
			return nil
		}
		select {
		case <-s.exited:
			return fmt.Errorf("soak: the server exited before listening")
		case <-ctx.Done():
			return fmt.Errorf("soak: waiting for the server: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: the server did not listen within %s", serverStartTimeout)
		}
	}
}

func (s *server) waitHealthy(ctx context.Context) error {
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(serverStartTimeout)
	for {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.URL+"/healthz", nil)
		if err != nil {
			return fmt.Errorf("soak: health request: %w", err)
		}
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("soak: GET /healthz did not answer 200 within %s", serverStartTimeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("soak: waiting for /healthz: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// Stop ends the server with SIGINT (a graceful shutdown that flushes its log), killing it
// after 5 s, and waits until its log is read. Safe to call more than once.
func (s *server) Stop() {
	s.stopped.Do(func() {
		_ = s.cmd.Process.Signal(os.Interrupt)
		select {
		case <-s.exited:
		case <-time.After(5 * time.Second):
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		s.readers.Wait() // Wait closes the pipes: every read must be over first
		_ = s.cmd.Wait()
	})
}

// Mark is the number of log events so far, to look only at what comes later.
func (s *server) Mark() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.lines)
}

// Since returns the log events after mark.
func (s *server) Since(mark int) []map[string]any {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]map[string]any(nil), s.lines[mark:]...)
}
