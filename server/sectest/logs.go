package sectest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
)

// LogSink collects the server's slog JSON output; it is safe for concurrent writers.
type LogSink struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

// Write implements io.Writer.
func (s *LogSink) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

// String returns everything written so far.
func (s *LogSink) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// Take returns everything written since the last Take (or since the start) and forgets
// it: for a fuzz target, which checks each input's lines on their own and would
// otherwise keep every line of a long run.
func (s *LogSink) Take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.buf.String()
	s.buf.Reset()
	return out
}

// Logger returns a JSON logger that writes to the sink, at every level from Debug up.
func (s *LogSink) Logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(s, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// Event is one decoded log line.
type Event map[string]any

// Str returns the event's attribute key as a string ("" when absent or not a string).
func (e Event) Str(key string) string {
	s, _ := e[key].(string)
	return s
}

// Events returns the events whose message is msg, in order. A line that is not JSON
// fails the test: every line must be structured.
func (s *LogSink) Events(t testing.TB, msg string) []Event {
	t.Helper()
	var out []Event
	for line := range strings.SplitSeq(s.String(), "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var e Event
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("sectest: log line is not JSON (%v): %q", err, line)
		}
		if e.Str("msg") == msg {
			out = append(out, e)
		}
	}
	return out
}

// Matching returns the events named msg whose attributes include every pair in attrs
// (compared as strings).
func (s *LogSink) Matching(t testing.TB, msg string, attrs map[string]string) []Event {
	t.Helper()
	var out []Event
	for _, e := range s.Events(t, msg) {
		ok := true
		for k, v := range attrs {
			if got, present := e[k]; !present || fmt.Sprint(got) != v {
				ok = false
				break
			}
		}
		if ok {
			out = append(out, e)
		}
	}
	return out
}
