//go:build js && wasm

package client

import (
	"context"
	"errors"
	"io"
	"testing"
)

// sseServer answers /api/token and /cartesia/tts/sse from the given list, the last entry
// repeating.
func sseServer(sse ...answer) func(request) answer {
	return func(r request) answer {
		switch r.url {
		case "/api/token":
			return answer{status: 200, body: tokenAnswer}
		case ttsSSEPath:
			a := sse[0]
			if len(sse) > 1 {
				sse = sse[1:]
			}
			return a
		}
		return errorAnswer(404, "not_found")
	}
}

func events(body string) answer {
	return answer{status: 200, body: body,
		header: map[string]string{"Content-Type": "text/event-stream"}}
}

func TestTTSSSEYieldsEventsUntilDone(t *testing.T) {
	f := installFetch(t, sseServer(events(
		"event: chunk\ndata: {\"type\":\"chunk\",\"data\":\"AAEC\",\"step_time\":12}\n\n"+
			": keep-alive\n\n"+
			"event: timestamps\ndata: {\"type\":\"timestamps\",\"word_timestamps\":"+
			"{\"words\":[\"hi\"],\"start\":[0],\"end\":[0.2]}}\n\n"+
			"event: done\ndata: {\"type\":\"done\",\"done\":true}\n\n")))
	c := newClient(t, nil)

	s, err := c.TTSSSE(context.Background(), jsonBody(`{"transcript":"hi"}`))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var types []string
	for {
		ev, err := s.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		types = append(types, ev.Type)
		if ev.Type == "chunk" && (string(ev.Audio) != "\x00\x01\x02" || ev.StepTime != 12) {
			t.Fatalf("chunk = %+v", ev)
		}
	}

	if len(types) != 3 || types[0] != "chunk" || types[1] != "timestamps" || types[2] != "done" {
		t.Fatalf("events = %v, want chunk, timestamps, done", types)
	}
	req := f.all()[len(f.all())-1]
	if req.method != "POST" || req.header["Accept"] != "text/event-stream" ||
		req.header["X-CSRF"] != "1" || req.body != `{"transcript":"hi"}` {
		t.Fatalf("request = %+v", req)
	}
}

func TestTTSSSEErrorEventEndsTheStreamWithAnUpstreamError(t *testing.T) {
	installFetch(t, sseServer(events(
		"event: error\ndata: {\"type\":\"error\",\"done\":true,\"status_code\":400,"+
			"\"error_code\":\"model_not_found\",\"title\":\"Invalid model\",\"message\":\"m\"}\n\n")))
	c := newClient(t, nil)
	s, _ := c.TTSSSE(context.Background(), jsonBody(`{}`))
	defer s.Close()

	_, err := s.Next()

	var e *Error
	if !errors.As(err, &e) || e.Code != CodeUpstreamError || e.Status != 400 ||
		e.Upstream == nil || e.Upstream.ErrorCode != "model_not_found" || e.Grant != GrantTTS {
		t.Fatalf("error = %#v, want upstream_error 400 model_not_found", err)
	}
	if _, again := s.Next(); !errors.Is(again, err) {
		t.Fatalf("second Next = %v, want the same error", again)
	}
}

func TestTTSSSERetriesOnceAfterRejectedToken(t *testing.T) {
	f := installFetch(t, sseServer(errorAnswer(401, "token_expired"),
		events("data: {\"type\":\"done\"}\n\n")))
	c := newClient(t, nil)
	s, _ := c.TTSSSE(context.Background(), jsonBody(`{}`))
	defer s.Close()

	ev, err := s.Next()

	if err != nil || ev.Type != "done" {
		t.Fatalf("Next = %+v, %v; want done", ev, err)
	}
	if f.count(ttsSSEPath) != 2 || f.count("/api/token") != 2 {
		t.Fatalf("sse calls %d, token calls %d; want one retry", f.count(ttsSSEPath),
			f.count("/api/token"))
	}
}

func TestTTSSSEHTTPErrorIsTyped(t *testing.T) {
	installFetch(t, sseServer(errorAnswer(413, "body_too_large")))
	c := newClient(t, nil)
	s, _ := c.TTSSSE(context.Background(), jsonBody(`{}`))
	defer s.Close()

	_, err := s.Next()

	var e *Error
	if !errors.As(err, &e) || e.Code != "body_too_large" || e.Status != 413 {
		t.Fatalf("error = %v, want body_too_large 413", err)
	}
}

func TestTTSSSEClosedStreamEnds(t *testing.T) {
	installFetch(t, sseServer(events("data: {\"type\":\"done\"}\n\n")))
	c := newClient(t, nil)
	s, _ := c.TTSSSE(context.Background(), jsonBody(`{}`))

	s.Close()

	if _, err := s.Next(); !errors.Is(err, io.EOF) {
		t.Fatalf("Next after Close = %v, want io.EOF", err)
	}
}
