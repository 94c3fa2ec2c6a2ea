package sse

import (
	"errors"
	"io"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// feedAll feeds stream split at every position in cuts and returns the events.
func feedAll(t *testing.T, stream string, cuts ...int) []Event {
	t.Helper()
	p := NewParser(0)
	var out []Event
	prev := 0
	for _, c := range append(cuts, len(stream)) {
		var err error
		out, err = p.Feed([]byte(stream[prev:c]), out)
		if err != nil {
			t.Fatalf("Feed: %v", err)
		}
		prev = c
	}
	return out
}

func TestParserReadsEventsFieldsAndLineEndings(t *testing.T) {
	cases := []struct {
		name   string
		stream string
		want   []Event
	}{
		{"typed event", "event: chunk\ndata: {\"a\":1}\n\n",
			[]Event{{Type: "chunk", Data: `{"a":1}`}}},
		{"untyped event is a message", "data: x\n\n", []Event{{Type: "message", Data: "x"}}},
		{"multi-line data joined by LF", "data: one\ndata: two\ndata:three\n\n",
			[]Event{{Type: "message", Data: "one\ntwo\nthree"}}},
		{"comments are ignored", ": keep-alive\n\nevent: done\n: note\ndata: {}\n\n",
			[]Event{{Type: "done", Data: "{}"}}},
		{"CRLF and CR line endings", "event: a\r\ndata: 1\r\n\r\nevent: b\rdata: 2\r\r",
			[]Event{{Type: "a", Data: "1"}, {Type: "b", Data: "2"}}},
		{"event without data is dropped", "event: ping\n\ndata: y\n\n",
			[]Event{{Type: "message", Data: "y"}}},
		{"unfinished event is not dispatched", "data: done\n\ndata: half\n",
			[]Event{{Type: "message", Data: "done"}}},
		{"id is kept", "id: 7\ndata: z\n\n", []Event{{Type: "message", Data: "z", ID: "7"}}},
		{"error event", "event: error\ndata: {\"type\":\"error\",\"status_code\":400}\n\n",
			[]Event{{Type: "error", Data: `{"type":"error","status_code":400}`}}},
		{"field without colon", "data\n\n", []Event{{Type: "message", Data: ""}}},
		{"only one leading space is removed", "data:  two spaces\n\n",
			[]Event{{Type: "message", Data: " two spaces"}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := feedAll(t, tc.stream)

			if !reflect.DeepEqual(got, tc.want) {
				t.Fatalf("events = %+v\nwant %+v", got, tc.want)
			}
		})
	}
}

func TestParserIsIndifferentToChunkBoundaries(t *testing.T) {
	stream := "event: chunk\r\ndata: {\"data\":\"AAAA\"}\r\n\r\n: c\n" +
		"event: timestamps\ndata: {\"w\":1}\ndata: {\"w\":2}\n\nevent: done\rdata: {}\r\r"
	want := feedAll(t, stream)
	if len(want) != 3 {
		t.Fatalf("whole stream gave %d events, want 3", len(want))
	}

	for i := 1; i < len(stream); i++ {
		for j := i; j < len(stream); j += 7 {
			if got := feedAll(t, stream, i, j); !reflect.DeepEqual(got, want) {
				t.Fatalf("cut at %d and %d: events = %+v\nwant %+v", i, j, got, want)
			}
		}
	}
}

func TestParserRejectsOversizedEvent(t *testing.T) {
	p := NewParser(16)

	_, err := p.Feed([]byte("data: "+strings.Repeat("x", 10)), nil)
	if err != nil {
		t.Fatalf("first chunk: %v", err)
	}
	_, err = p.Feed([]byte(strings.Repeat("x", 10)+"\n\n"), nil)

	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("error = %v, want ErrTooLarge", err)
	}
}

func TestParserLimitCountsOneEventAtATime(t *testing.T) {
	p := NewParser(32)
	var out []Event
	var err error

	for range 10 {
		if out, err = p.Feed([]byte("data: 0123456789\n\n"), out); err != nil {
			t.Fatalf("Feed: %v", err)
		}
	}

	if len(out) != 10 {
		t.Fatalf("got %d events, want 10", len(out))
	}
}

func TestReaderPullsEventsOneAtATime(t *testing.T) {
	stream := "event: chunk\ndata: 1\n\nevent: chunk\ndata: 2\n\nevent: done\ndata: {}\n\n"
	r := NewReader(iotest.OneByteReader(strings.NewReader(stream)), 0)

	var types []string
	for {
		ev, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("Next: %v", err)
		}
		types = append(types, ev.Type+":"+ev.Data)
	}

	want := []string{"chunk:1", "chunk:2", "done:{}"}
	if !reflect.DeepEqual(types, want) {
		t.Fatalf("events = %v, want %v", types, want)
	}
}

func TestReaderReadsOnlyWhenAsked(t *testing.T) {
	src := &countingReader{r: strings.NewReader("data: a\n\n" + strings.Repeat("data: b\n\n", 100))}
	r := NewReader(iotest.OneByteReader(src), 0)

	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}

	if src.n > len("data: a\n\n") {
		t.Fatalf("read %d bytes for the first event; the reader ran ahead", src.n)
	}
}

func TestReaderReportsReadErrors(t *testing.T) {
	boom := errors.New("network down")
	r := NewReader(io.MultiReader(strings.NewReader("data: a\n\ndata: b"),
		iotest.ErrReader(boom)), 0)

	if ev, err := r.Next(); err != nil || ev.Data != "a" {
		t.Fatalf("first = %+v, %v", ev, err)
	}
	if _, err := r.Next(); !errors.Is(err, boom) {
		t.Fatalf("error = %v, want %v", err, boom)
	}
}

type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}
