package proxy_test

import (
	"bufio"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// sseRequest is a POST /cartesia/tts/sse as the page sends it.
func (h *harness) sseRequest() *http.Request {
	r := h.request(`{"transcript":"hi"}`, h.sessionCookie(), h.tokenCookie(token.TTS, time.Minute))
	r.URL.Path = "/cartesia/tts/sse"
	r.Header.Set("Accept", "text/event-stream")
	return r
}

const (
	chunkEvent = "event: chunk\ndata: {\"type\":\"chunk\",\"data\":\"AAAA\",\"done\":false}\n\n"
	doneEvent  = "event: done\ndata: {\"type\":\"done\",\"done\":true,\"status_code\":206}\n\n"
	errorEvent = "event: error\r\ndata: {\"type\":\"error\",\"done\":true,\"status_code\":500," +
		"\"title\":\"Internal\",\"message\":\"boom\"}\r\n\r\n"
)

func TestSSEEachEventArrivesWholeAndAtOnce(t *testing.T) {
	h := newHarness(t, nil)
	gotFirst := make(chan struct{})
	halfSent := make(chan struct{})
	checkedHalf := make(chan struct{})
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		f := w.(http.Flusher)
		_, _ = io.WriteString(w, chunkEvent)
		f.Flush()
		// The next event is written only once the client holds the first: a proxy that
		// waited for more data, or for the end, would stall here.
		if !waitChan(gotFirst) {
			return
		}
		_, _ = io.WriteString(w, doneEvent[:20])
		f.Flush()
		close(halfSent)
		if !waitChan(checkedHalf) {
			return
		}
		_, _ = io.WriteString(w, doneEvent[20:])
	})

	resp, err := h.client.Do(h.sseRequest())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if ct := resp.Header.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}

	body := newChunks(resp.Body)
	if got := body.next(t, 5*time.Second); got != chunkEvent {
		t.Fatalf("first read %q, want exactly the chunk event", got)
	}
	close(gotFirst)

	<-halfSent
	if got := body.next(t, 200*time.Millisecond); got != "" {
		t.Errorf("half an event reached the client: %q", got)
	}
	close(checkedHalf)
	if got := body.next(t, 5*time.Second); got != doneEvent {
		t.Errorf("then %q, want the done event whole", got)
	}

	up := h.upstreamSaw()
	if len(up) != 1 || up[0].Path != "/tts/sse" || up[0].Header.Get("Accept") != "text/event-stream" {
		t.Errorf("upstream saw %+v", up)
	}
}

func TestSSEUpstreamErrorEventPassesThrough(t *testing.T) {
	h := newHarness(t, nil)
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, chunkEvent+errorEvent)
	})
	resp, body := h.do(h.sseRequest())
	if resp.StatusCode != 200 || body != chunkEvent+errorEvent {
		t.Errorf("got %d %q, want the chunk and error events unchanged", resp.StatusCode, body)
	}
}

func TestSSEUpstreamDyingMidStreamTruncatesTheResponse(t *testing.T) {
	h := newHarness(t, nil)
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, chunkEvent+"event: chunk\ndata: {\"ty")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	resp, err := h.client.Do(h.sseRequest())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err == nil {
		t.Error("the response ended cleanly; the client cannot tell it was cut")
	}
	if !strings.HasPrefix(string(got), chunkEvent) {
		t.Errorf("the complete event before the failure was not delivered: %q", got)
	}
}

func TestSSEOversizeEventAbortsTheStream(t *testing.T) {
	h := newHarness(t, nil)
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, chunkEvent+"data: "+strings.Repeat("A", 1<<20)+"\n\n")
	})
	resp, err := h.client.Do(h.sseRequest())
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	got, err := io.ReadAll(resp.Body)
	if err == nil || string(got) != chunkEvent {
		t.Errorf("got %d bytes, %v; want the first event then a cut", len(got), err)
	}
}

func TestSSEUpstreamRefusalIsJSON(t *testing.T) {
	h := newHarness(t, nil)
	h.answer(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"error_code":"x","title":"Bad","message":"raw only"}`)
	})
	resp, body := h.do(h.sseRequest())
	if resp.StatusCode != 400 || errorCode(t, body).Code != "upstream_error" {
		t.Errorf("got %d %s, want 400 upstream_error", resp.StatusCode, body)
	}
}

func waitChan(c chan struct{}) bool {
	select {
	case <-c:
		return true
	case <-time.After(5 * time.Second):
		return false
	}
}

// chunks reads a body in the pieces the network delivers.
type chunks struct {
	c chan string
}

func newChunks(r io.Reader) *chunks {
	ch := &chunks{c: make(chan string, 16)}
	go func() {
		defer close(ch.c)
		br := bufio.NewReader(r)
		buf := make([]byte, 64<<10)
		for {
			n, err := br.Read(buf)
			if n > 0 {
				ch.c <- string(buf[:n])
			}
			if err != nil {
				return
			}
		}
	}()
	return ch
}

// next returns what arrived within d ("" for nothing), gathering pieces that arrive
// together.
func (c *chunks) next(t *testing.T, d time.Duration) string {
	t.Helper()
	select {
	case s := <-c.c:
		for {
			select {
			case more, ok := <-c.c:
				if !ok {
					return s
				}
				s += more
			case <-time.After(20 * time.Millisecond):
				return s
			}
		}
	case <-time.After(d):
		return ""
	}
}
