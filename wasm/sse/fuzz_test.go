package sse

import (
	"errors"
	"io"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"testing/iotest"
)

// chunked splits stream into pieces of 1 to 16 bytes chosen by seed, so that a fuzz input
// also picks where the network would have cut it.
func chunked(stream []byte, seed uint64) [][]byte {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var out [][]byte
	for len(stream) > 0 {
		n := min(1+rng.IntN(16), len(stream))
		out = append(out, stream[:n])
		stream = stream[n:]
	}
	return out
}

// feedChunks feeds every chunk to one parser and returns what it produced.
func feedChunks(max int, chunks [][]byte) ([]Event, error) {
	p := NewParser(max)
	var out []Event
	for _, c := range chunks {
		var err error
		if out, err = p.Feed(c, out); err != nil {
			return out, err
		}
	}
	return out, nil
}

// FuzzParserIgnoresChunkBoundaries feeds arbitrary bytes whole, in random chunks and
// through a one-byte Reader: the events, and whether the size limit tripped, must not
// depend on how the network cut the stream.
func FuzzParserIgnoresChunkBoundaries(f *testing.F) {
	f.Add([]byte("event: chunk\ndata: {\"a\":1}\n\n"), uint64(1), uint16(0))
	f.Add([]byte("data: one\r\ndata: two\r\rid: 7\n\ndata: x\n\n"), uint64(2), uint16(0))
	f.Add([]byte(": keep-alive\n\nevent: done\nid: a\x00b\ndata\n\n"), uint64(3), uint16(0))
	f.Add([]byte("data: "+strings.Repeat("x", 100)+"\n\n"), uint64(4), uint16(40))
	f.Add([]byte("data:\r\n\r\n\r\n\n\rdata: \xff\xfe\n\n"), uint64(5), uint16(8))

	f.Fuzz(func(t *testing.T, stream []byte, seed uint64, limit uint16) {
		max := int(limit) // 0 selects DefaultMaxEvent
		whole, wholeErr := NewParser(max).Feed(stream, nil)
		parts, partsErr := feedChunks(max, chunked(stream, seed))

		if (wholeErr == nil) != (partsErr == nil) {
			t.Fatalf("whole: %v, chunked: %v", wholeErr, partsErr)
		}
		for _, err := range []error{wholeErr, partsErr} {
			if err != nil && !errors.Is(err, ErrTooLarge) {
				t.Fatalf("error %v is not ErrTooLarge", err)
			}
		}
		if !reflect.DeepEqual(whole, parts) {
			t.Fatalf("whole gave %q, chunked gave %q", whole, parts)
		}
		for _, ev := range whole {
			if ev.Type == "" || strings.ContainsAny(ev.Type+ev.ID, "\r\n") ||
				strings.ContainsRune(ev.ID, 0) || strings.Contains(ev.Data, "\r") {
				t.Fatalf("event %q carries a line break, NUL id or empty type", ev)
			}
		}

		if wholeErr != nil {
			return
		}
		r := NewReader(iotest.OneByteReader(strings.NewReader(string(stream))), max)
		var read []Event
		for {
			ev, err := r.Next()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("Reader: %v", err)
			}
			read = append(read, ev)
		}
		if !reflect.DeepEqual(read, whole) && !(len(read) == 0 && len(whole) == 0) {
			t.Fatalf("Reader gave %q, Feed gave %q", read, whole)
		}
	})
}

// FuzzParserRoundTrip writes two events the way a server would, with the line ending and
// chunking the input picks, and parses them back: every field must survive, and the id
// of the first event must carry over to the second (the last id seen).
func FuzzParserRoundTrip(f *testing.F) {
	f.Add("chunk", "{\"data\":\"AAA=\"}", "ctx-1", "done", "line one\nline two", uint8(0),
		uint64(1))
	f.Add("", " leading space", "", "", "", uint8(1), uint64(2))
	f.Add("error", "\n\nblank lines inside\n", "42", "x", ":colon", uint8(2), uint64(3))
	f.Add("ü", "\xff\xfe", "id with spaces ", "message", "data: nested", uint8(1), uint64(4))

	endings := []string{"\n", "\r\n", "\r"}
	f.Fuzz(func(t *testing.T, typ1, data1, id, typ2, data2 string, ending uint8,
		seed uint64) {
		// Fields that the grammar cannot carry: line breaks in a type or id, CR in data
		// (LF in data is carried as one data line per part), NUL in an id.
		drop := func(s, chars string) string {
			return strings.Map(func(r rune) rune {
				if strings.ContainsRune(chars, r) {
					return -1
				}
				return r
			}, s)
		}
		typ1, typ2, id = drop(typ1, "\r\n"), drop(typ2, "\r\n"), drop(id, "\r\n\x00")
		data1, data2 = drop(data1, "\r"), drop(data2, "\r")
		nl := endings[int(ending)%len(endings)]

		var b strings.Builder
		write := func(typ, data, id string) {
			b.WriteString(": comment" + nl)
			if typ != "" {
				b.WriteString("event: " + typ + nl)
			}
			if id != "" {
				b.WriteString("id: " + id + nl)
			}
			for line := range strings.SplitSeq(data, "\n") {
				b.WriteString("data: " + line + nl)
			}
			b.WriteString("retry: 1000" + nl + nl)
		}
		write(typ1, data1, id)
		write(typ2, data2, "")
		if nl == "\r" {
			// A final CR could be the first half of a CRLF; an LF-free tail settles it.
			b.WriteString(":" + nl)
		}

		got, err := feedChunks(0, chunked([]byte(b.String()), seed))
		if err != nil {
			t.Fatal(err)
		}
		orMessage := func(s string) string {
			if s == "" {
				return "message"
			}
			return s
		}
		want := []Event{{Type: orMessage(typ1), Data: data1, ID: id},
			{Type: orMessage(typ2), Data: data2, ID: id}}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("stream %q\nparsed %q\nwant   %q", b.String(), got, want)
		}
	})
}
