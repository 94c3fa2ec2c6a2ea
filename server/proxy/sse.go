package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/http"
)

// maxEvent caps one server-sent event. The largest real events are TTS chunks: base64 of
// about 100 ms of audio (under 20 KiB even as 48 kHz float32) in a little JSON; 1 MiB
// leaves room for far larger chunks and still bounds what one event can make us hold.
const maxEvent = 1 << 20

// errEventTooLarge aborts a stream whose upstream sent an event over maxEvent.
var errEventTooLarge = errors.New("proxy: upstream event over the size limit")

// relayEvents relays a text/event-stream response one event at a time: each event's
// bytes are passed on unchanged as soon as its terminating blank line arrives, and
// flushed, so the browser sees every chunk, timestamps, done or error event the moment
// upstream sends it and never half of one. Each event passes the echo check first; an
// event is whole before it is checked, so a token split across upstream's reads is seen
// whole too.
func (c *call) relayEvents(w http.ResponseWriter, r *http.Request, resp *http.Response) {
	d, ok := c.startResponse(w, r, resp)
	if !ok {
		return
	}
	defer d.stop()

	events := newEventReader(resp.Body)
	for {
		ev, err := events.next()
		if len(ev) > 0 {
			d.upstreamRead()
			if !d.pass(ev) {
				return
			}
		}
		switch {
		case err == io.EOF:
			d.finish()
			return
		case errors.Is(err, errEventTooLarge):
			d.cut("upstream_event_too_large")
			return
		case err != nil:
			d.abort()
			return
		}
	}
}

// eventReader splits an event stream into events, each returned with its bytes as they
// arrived, terminating blank line included.
//
// Limitation: lines must end in "\n" or "\r\n". The SSE format also allows a bare "\r";
// a stream using it is still relayed unchanged, but only at the size limit or the end of
// the stream rather than event by event. Cartesia ends lines with "\n".
type eventReader struct {
	br  *bufio.Reader
	buf []byte
}

func newEventReader(r io.Reader) *eventReader {
	return &eventReader{br: bufio.NewReaderSize(r, copyBuffer)}
}

// next returns the next complete event. At the end of the stream it returns whatever
// partial event remains with io.EOF; on a read error, the partial event with the error.
func (e *eventReader) next() ([]byte, error) {
	e.buf = e.buf[:0]
	lineStart := 0
	for {
		part, err := e.br.ReadSlice('\n')
		e.buf = append(e.buf, part...)
		if len(e.buf) > maxEvent {
			return nil, errEventTooLarge
		}

		switch {
		case err == bufio.ErrBufferFull:
			// The line continues beyond the buffer; keep reading it.
			continue
		case err != nil:
			return e.buf, err
		}

		line := e.buf[lineStart:]
		if bytes.Equal(line, []byte("\n")) || bytes.Equal(line, []byte("\r\n")) {
			return e.buf, nil
		}
		lineStart = len(e.buf)
	}
}
