//go:build js && wasm

package client

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/wasm/cartesia"
	"github.com/voxgate/voxgate/wasm/jsx"
)

// STTSocket is one /cartesia/stt/websocket (manual finalize) or
// /cartesia/stt/turns/websocket (turn detection) connection.
type STTSocket struct {
	s     *socket
	turns bool

	doneOnce sync.Once
	done     chan struct{} // closed when the server's done event was read off the socket
}

// STTWebSocket opens a streaming transcription (after checking the stt token).
func (c *Client) STTWebSocket(ctx context.Context, opts cartesia.STTOptions) (*STTSocket,
	error) {
	q, err := opts.Query()
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Grant: GrantSTT, Message: err.Error()}
	}
	return c.openSTT(ctx, "/cartesia/stt/websocket", q, false)
}

// STTTurns opens a transcription with turn detection (after checking the stt token).
func (c *Client) STTTurns(ctx context.Context, opts cartesia.TurnOptions) (*STTSocket,
	error) {
	q, err := opts.Query()
	if err != nil {
		return nil, &Error{Code: CodeInvalidRequest, Grant: GrantSTT, Message: err.Error()}
	}
	return c.openSTT(ctx, "/cartesia/stt/turns/websocket", q, true)
}

func (c *Client) openSTT(ctx context.Context, path, query string, turns bool) (*STTSocket,
	error) {
	t := &STTSocket{turns: turns, done: make(chan struct{})}
	s, err := c.dial(ctx, GrantSTT, path, query, func(m message) {
		if !m.binary && cartesia.TypeOf(m.data) == cartesia.STTDone {
			t.doneOnce.Do(func() { close(t.done) })
		}
	})
	if err != nil {
		return nil, err
	}
	t.s = s
	return t, nil
}

// Send sends one binary frame of audio in the declared encoding and sample rate. It
// returns once the browser has queued the frame.
func (t *STTSocket) Send(audio []byte) error {
	return t.s.send(true, audio)
}

// Finalize asks for the final transcript of the audio so far (manual finalize only); the
// server answers flush_done.
func (t *STTSocket) Finalize() error {
	if t.turns {
		return &Error{Code: CodeInvalidRequest, Grant: GrantSTT,
			Message: "the turns endpoint finalizes by itself"}
	}
	return t.s.send(false, []byte(cartesia.CommandFinalize))
}

// Configure sends new turn thresholds (turns only) as a JSON object.
func (t *STTSocket) Configure(turn []byte) error {
	if !t.turns {
		return &Error{Code: CodeInvalidRequest, Grant: GrantSTT,
			Message: "configure is for the turns endpoint"}
	}
	msg, err := cartesia.TurnConfig(turn)
	if err != nil {
		return &Error{Code: CodeInvalidRequest, Grant: GrantSTT, Message: err.Error()}
	}
	return t.s.send(false, msg)
}

// Close ends the stream gracefully: it sends the close command, waits (at most closeWait,
// or until ctx ends) for the server's done event or its close, then closes the socket.
// Events up to done stay readable with Next.
func (t *STTSocket) Close(ctx context.Context) error {
	cmd := []byte(cartesia.CommandClose)
	if t.turns {
		cmd = cartesia.TurnClose()
	}
	err := t.s.send(false, cmd)

	timer := time.NewTimer(closeWait)
	defer timer.Stop()
	select {
	case <-t.done:
	case <-t.s.ended:
	case <-timer.C:
	case <-ctx.Done():
	}
	t.s.Close(closeNormal, "")

	var e *Error
	if errors.As(err, &e) && e.Code == CodeClosed {
		return nil // already closed: nothing to finish
	}
	return err
}

// Abort closes the socket at once with 1000, without waiting for the final transcript.
func (t *STTSocket) Abort() {
	t.s.Close(closeNormal, "")
}

// Next returns the next event: transcript, flush_done, done, connected, turn.*, or a type
// Cartesia adds. An error event ends the stream with an *Error of code upstream_error;
// after the socket closes normally Next returns io.EOF.
func (t *STTSocket) Next(ctx context.Context) (cartesia.STTEvent, error) {
	for {
		m, err := t.s.next(ctx)
		if err != nil {
			return cartesia.STTEvent{}, err
		}
		if m.binary {
			continue // the server sends JSON text only
		}
		ev, err := cartesia.DecodeSTTEvent(m.data)
		if err != nil {
			return cartesia.STTEvent{}, badEvent(err, GrantSTT)
		}
		if ev.Err != nil {
			return cartesia.STTEvent{}, streamError(ev.Err, GrantSTT)
		}
		return ev, nil
	}
}

// Release stops reading: messages still queued and any that arrive are dropped.
func (t *STTSocket) Release() { t.s.release() }

// Closed waits until the socket has ended and returns how.
func (t *STTSocket) Closed(ctx context.Context) (CloseStatus, error) {
	return t.s.Closed(ctx)
}

// Audio is a file to transcribe: Data (bytes in Go) or Blob (a JavaScript Blob or File,
// which is sent without being copied through Go). Name is the file name sent in the form
// ("audio" when empty); Type its MIME type for Data.
type Audio struct {
	Data []byte
	Blob safejs.Value
	Name string
	Type string
}

// Transcribe sends a file to POST /cartesia/stt (batch transcription).
//
// The multipart body is a browser FormData built here: the browser writes the multipart
// encoding and reads Blob parts from wherever it keeps them, so a large File never passes
// through Go's memory.
func (c *Client) Transcribe(ctx context.Context, audio Audio,
	opts cartesia.BatchOptions) (Transcription, error) {
	return c.transcribe(ctx, "/cartesia/stt", audio, opts, false)
}

// TranscribeOpenAI sends a file to POST /cartesia/audio/transcriptions, the
// OpenAI-compatible form of the same transcription.
func (c *Client) TranscribeOpenAI(ctx context.Context, audio Audio,
	opts cartesia.BatchOptions) (Transcription, error) {
	return c.transcribe(ctx, "/cartesia/audio/transcriptions", audio, opts, true)
}

// Transcription is a batch transcription's answer.
type Transcription struct {
	cartesia.Transcription

	// Raw is the answer's JSON as received (it carries request_id and any new field).
	Raw json.RawMessage
}

func (c *Client) transcribe(ctx context.Context, path string, audio Audio,
	opts cartesia.BatchOptions, openai bool) (Transcription, error) {
	fields, query, err := opts.Form(openai)
	if err != nil {
		return Transcription{}, &Error{Code: CodeInvalidRequest, Grant: GrantSTT,
			Message: err.Error()}
	}
	form, err := buildForm(audio, opts.Filename, fields)
	if err != nil {
		return Transcription{}, &Error{Code: CodeInvalidRequest, Grant: GrantSTT,
			Message: err.Error(), Err: err}
	}
	if query != "" {
		path += "?" + query
	}

	raw, err := withToken(ctx, c, GrantSTT, func(secret string) ([]byte, error) {
		// A FormData can be sent again: fetch reads its parts afresh for the retry.
		resp, err := c.call(ctx, secret, jsx.Request{Method: "POST", URL: path,
			JSBody: form.Value()})
		if err != nil {
			return nil, err
		}
		b, err := resp.Bytes()
		if err != nil {
			return nil, readError(ctx, "POST", path, err)
		}
		if echoes(b, secret) {
			return nil, echoError(GrantSTT)
		}
		return b, nil
	})
	if err != nil {
		return Transcription{}, err
	}

	out := Transcription{Raw: raw}
	if err := json.Unmarshal(raw, &out.Transcription); err != nil {
		return Transcription{}, &Error{Code: CodeBadResponse, Status: 200, Grant: GrantSTT,
			Message: "POST " + path + ": decode answer: " + err.Error(), Err: err}
	}
	return out, nil
}

// buildForm puts the file first, then the text fields.
func buildForm(audio Audio, filename string, fields []cartesia.Field) (*jsx.Form, error) {
	blob := audio.Blob
	if blob.Type() != safejs.TypeObject {
		if audio.Data == nil {
			return nil, errors.New("no audio to transcribe")
		}
		var err error
		if blob, err = jsx.Blob(audio.Data, audio.Type); err != nil {
			return nil, err
		}
	}
	if filename == "" {
		filename = audio.Name
	}
	if filename == "" {
		filename = "audio"
	}

	form, err := jsx.NewForm()
	if err != nil {
		return nil, err
	}
	if err := form.SetBlob("file", blob, filename); err != nil {
		return nil, err
	}
	for _, f := range fields {
		if err := form.Set(f.Name, f.Value); err != nil {
			return nil, err
		}
	}
	return form, nil
}
