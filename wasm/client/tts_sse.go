//go:build js && wasm

package client

import (
	"context"
	"errors"
	"io"
	"sync"

	"github.com/voxgate/voxgate/internal/leak"
	"github.com/voxgate/voxgate/wasm/cartesia"
	"github.com/voxgate/voxgate/wasm/jsx"
	"github.com/voxgate/voxgate/wasm/sse"
)

// TTSStream is one POST /cartesia/tts/sse: events arrive as the server relays them. The
// body is read only when Next is called, so a consumer that stops reading leaves the
// audio in the network (TCP backpressure) instead of in memory.
type TTSStream struct {
	c      *Client
	body   []byte
	ctx    context.Context
	cancel context.CancelFunc

	mu     sync.Mutex // serializes Next
	opened bool
	resp   io.ReadCloser
	events *sse.Reader
	err    error    // sticky: the stream ended
	forms  []string // the forms of the direct-mode token (leak.Forms), nil through the proxy
}

// TTSSSE starts a streaming synthesis. req is Cartesia's /tts/sse body (a TTSRequest with
// a raw output_format, a json.RawMessage, or any value encoding to it). The request is
// sent on the first Next, after the tts token is checked; ctx bounds the whole stream.
// Close the stream when done with it.
func (c *Client) TTSSSE(ctx context.Context, req any) (*TTSStream, error) {
	body, err := marshal(req)
	if err != nil {
		return nil, AsError(err, GrantTTS)
	}
	ctx, cancel := context.WithCancel(ctx)
	return &TTSStream{c: c, body: body, ctx: ctx, cancel: cancel}, nil
}

// Next returns the next event: chunk, timestamps, done, or a type Cartesia adds. An error
// event ends the stream with an *Error of code upstream_error; after the last event Next
// returns io.EOF. Errors are sticky.
func (s *TTSStream) Next() (cartesia.TTSEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()

	if s.err != nil {
		return cartesia.TTSEvent{}, s.err
	}
	if !s.opened {
		s.opened = true
		if err := s.open(); err != nil {
			return s.fail(err)
		}
	}

	for {
		frame, err := s.events.Next()
		if errors.Is(err, io.EOF) {
			return s.fail(io.EOF)
		}
		if err != nil {
			return s.fail(readError(s.ctx, "POST", ttsSSEPath, err))
		}

		if leak.InString(frame.Data, s.forms) || leak.InString(frame.Type, s.forms) {
			return s.fail(echoError(GrantTTS))
		}
		ev, err := cartesia.DecodeTTSEvent([]byte(frame.Data))
		if err != nil && frame.Type == "error" {
			// An error frame whose data is not an event still ends the stream as an error.
			ev, err = cartesia.TTSEvent{Type: "error", Err: &cartesia.APIError{
				Message: frame.Data}}, nil
		}
		if err != nil {
			return s.fail(badEvent(err, GrantTTS))
		}
		if ev.Err != nil {
			return s.fail(streamError(ev.Err, GrantTTS))
		}
		if ev.Type == cartesia.TTSDone {
			s.err = io.EOF // done is the last event; do not wait for the body to end
			s.release()
		}
		return ev, nil
	}
}

const ttsSSEPath = "/cartesia/tts/sse"

// open sends the request, refreshing and retrying once on a rejected token.
func (s *TTSStream) open() error {
	resp, err := withToken(s.ctx, s.c, GrantTTS, func(secret string) (*jsx.Response, error) {
		s.forms = leak.Forms(secret)
		return s.c.call(s.ctx, secret, jsx.Request{Method: "POST", URL: ttsSSEPath, Body: s.body,
			Header: map[string]string{"Content-Type": "application/json",
				"Accept": "text/event-stream"}})
	})
	if err != nil {
		return err
	}
	s.c.sessionStarted()

	body, err := resp.Body()
	if err != nil {
		return readError(s.ctx, "POST", ttsSSEPath, err)
	}
	s.resp = body
	s.events = sse.NewReader(body, sse.DefaultMaxEvent)
	return nil
}

// fail ends the stream with err and releases the request.
func (s *TTSStream) fail(err error) (cartesia.TTSEvent, error) {
	if !errors.Is(err, io.EOF) {
		err = AsError(err, GrantTTS)
	}
	s.err = err
	s.release()
	return cartesia.TTSEvent{}, err
}

func (s *TTSStream) release() {
	if s.resp != nil {
		_ = s.resp.Close()
		s.resp = nil
	}
	s.cancel()
}

// Close stops the stream and aborts the request; a Next in progress returns an error of
// code aborted. Safe to call more than once.
func (s *TTSStream) Close() {
	s.cancel() // first: unblocks a Next waiting on the network

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err == nil {
		s.err = io.EOF
	}
	if s.resp != nil {
		_ = s.resp.Close()
		s.resp = nil
	}
}
