// Package sse parses a text/event-stream (Server-Sent Events) body into events, fed in
// whatever chunks the network delivers.
//
// It owns the event-stream line grammar (fields, comments, the three line endings, events
// ended by a blank line) and nothing else: it never does I/O, never decodes the data it
// carries and knows nothing of Cartesia. It builds and tests natively as well as under
// GOOS=js.
package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// DefaultMaxEvent bounds one event (all its lines together). Cartesia's largest SSE frame
// is an audio chunk of about 100 ms, base64 in JSON: well under 1 MiB even at 48 kHz
// float32; anything larger is a broken or hostile stream, not audio.
const DefaultMaxEvent = 4 << 20

// ErrTooLarge is returned when one event grows past the parser's limit.
var ErrTooLarge = errors.New("sse: event too large")

// Event is one dispatched event.
type Event struct {
	// Type is the event field, "message" when the event had none.
	Type string

	// Data is the data fields joined by "\n".
	Data string

	// ID is the last id field seen, empty when none.
	ID string
}

// Parser turns chunks of an event stream into events. The zero value is not ready; use
// NewParser.
type Parser struct {
	max     int
	line    []byte // the incomplete line carried over from the previous chunk
	skipLF  bool   // the previous chunk ended with CR: a leading LF belongs to it
	typ     string
	data    strings.Builder
	hasData bool
	id      string
	size    int
}

// NewParser returns a parser that fails with ErrTooLarge when one event exceeds max bytes
// (DefaultMaxEvent when max <= 0).
func NewParser(max int) *Parser {
	if max <= 0 {
		max = DefaultMaxEvent
	}
	return &Parser{max: max}
}

// Feed parses the next chunk and appends every event it completes to out. A line or an
// event split across chunks is completed by a later Feed.
func (p *Parser) Feed(chunk []byte, out []Event) ([]Event, error) {
	for len(chunk) > 0 {
		if p.skipLF {
			p.skipLF = false
			if chunk[0] == '\n' {
				chunk = chunk[1:]
				continue
			}
		}

		i := bytes.IndexAny(chunk, "\r\n")
		if i < 0 {
			if err := p.grow(len(chunk)); err != nil {
				return out, err
			}
			p.line = append(p.line, chunk...)
			return out, nil
		}
		if err := p.grow(i); err != nil {
			return out, err
		}

		line := chunk[:i]
		if len(p.line) > 0 {
			p.line = append(p.line, line...)
			line = p.line
		}
		if chunk[i] == '\r' {
			p.skipLF = true
		}
		chunk = chunk[i+1:]

		if ev, ok := p.field(line); ok {
			out = append(out, ev)
		}
		p.line = p.line[:0]
	}
	return out, nil
}

// grow accounts n more bytes to the current event.
func (p *Parser) grow(n int) error {
	p.size += n
	if p.size > p.max {
		return fmt.Errorf("%w: more than %d bytes", ErrTooLarge, p.max)
	}
	return nil
}

// field handles one complete line; a blank line dispatches the event being built.
func (p *Parser) field(line []byte) (Event, bool) {
	if len(line) == 0 {
		return p.dispatch()
	}
	if line[0] == ':' {
		return Event{}, false // a comment (often a keep-alive)
	}

	name, value := string(line), ""
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name = string(line[:i])
		value = strings.TrimPrefix(string(line[i+1:]), " ")
	}
	switch name {
	case "event":
		p.typ = value
	case "data":
		if p.hasData {
			p.data.WriteByte('\n')
		}
		p.data.WriteString(value)
		p.hasData = true
	case "id":
		if !strings.ContainsRune(value, 0) {
			p.id = value
		}
	default:
		// "retry" and unknown fields are ignored, as the event-stream grammar says.
	}
	return Event{}, false
}

// dispatch ends the current event. An event without data is dropped (the grammar says
// so), but its type is reset all the same.
func (p *Parser) dispatch() (Event, bool) {
	ev := Event{Type: p.typ, Data: p.data.String(), ID: p.id}
	ok := p.hasData
	p.typ, p.hasData, p.size = "", false, 0
	p.data.Reset()
	if ev.Type == "" {
		ev.Type = "message"
	}
	return ev, ok
}

// Reader pulls events from an io.Reader, reading only when the caller asks for the next
// event, so a slow consumer leaves bytes unread in the network (backpressure).
type Reader struct {
	r       io.Reader
	p       *Parser
	buf     []byte
	pending []Event
	err     error
}

// NewReader returns a Reader over r with the given event size limit (see NewParser).
func NewReader(r io.Reader, max int) *Reader {
	return &Reader{r: r, p: NewParser(max), buf: make([]byte, 32<<10)}
}

// Next returns the next event. At the end of the stream it returns io.EOF; an event left
// unfinished by the end of the stream is dropped, as the grammar says.
func (r *Reader) Next() (Event, error) {
	for len(r.pending) == 0 {
		if r.err != nil {
			return Event{}, r.err
		}
		n, err := r.r.Read(r.buf)
		if n > 0 {
			var perr error
			r.pending, perr = r.p.Feed(r.buf[:n], r.pending[:0])
			if perr != nil {
				r.pending, r.err = nil, perr
				return Event{}, perr
			}
		}
		if err != nil {
			r.err = err
		}
	}
	ev := r.pending[0]
	r.pending = r.pending[1:]
	return ev, nil
}
