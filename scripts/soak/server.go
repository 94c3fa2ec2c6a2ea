package main

import (
	"bufio"
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
	"sync"
	"time"
)

// serverStartTimeout bounds how long the binary may take to listen and answer /healthz.
const serverStartTimeout = 15 * time.Second

// server is a running bin/server and the JSON lines it has logged so far.
type server struct {
	URL      string
	User     string
	Password string

	cmd     *exec.Cmd
	exited  chan struct{}
	stopped sync.Once

	mu    sync.Mutex
	lines []map[string]any
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
	srv.cmd.Stdout = io.Discard // the URL and the demo password, for people
	stderr, err := srv.cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("soak: server stderr: %w", err)
	}
	if err := srv.cmd.Start(); err != nil {
		return nil, fmt.Errorf("soak: start %s: %w", bin, err)
	}
	go func() {
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
	return srv, nil
}

func (s *server) readLog(r io.Reader) {
	defer close(s.exited)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		var fields map[string]any
		if json.Unmarshal(sc.Bytes(), &fields) != nil {
			continue // not one of the server's JSON events
		}
		s.mu.Lock()
		s.lines = append(s.lines, fields)
		s.mu.Unlock()
	}
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
