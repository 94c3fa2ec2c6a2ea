package proxy

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// relayThrough feeds stream to g in the given pieces, as a relay would, and returns what
// was passed on and whether (and after which piece) an echo was reported.
func relayThrough(g *echoGuard, pieces [][]byte) (sent []byte, echoAt int) {
	for i, p := range pieces {
		first, second, echo := g.next(p)
		if echo {
			return sent, i
		}
		sent = append(append(sent, first...), second...)
	}
	return append(sent, g.rest()...), -1
}

// split cuts b at the given offsets (sorted, within b).
func split(b []byte, cuts []int) [][]byte {
	var out [][]byte
	last := 0
	for _, c := range cuts {
		out = append(out, b[last:c])
		last = c
	}
	return append(out, b[last:])
}

// checkRelay is the guard's contract for one stream cut into pieces: without an echo,
// everything passes unchanged; with one, it is reported at the piece that completes the
// first occurrence, and nothing of that occurrence (not a byte) has passed.
func checkRelay(t *testing.T, secret string, stream []byte, cuts []int) {
	t.Helper()
	g := newEchoGuard(secret)
	pieces := split(stream, cuts)
	sent, echoAt := relayThrough(g, pieces)

	first := -1
	end := 0
	for _, n := range g.needles {
		if i := bytes.Index(stream, n); i >= 0 && (first < 0 || i+len(n) < end) {
			first, end = i, i+len(n)
		}
	}
	if first < 0 {
		if echoAt >= 0 || !bytes.Equal(sent, stream) {
			t.Fatalf("%q in %d pieces: echo at %d, passed %q", stream, len(pieces), echoAt,
				sent)
		}
		return
	}

	// The piece that completes the earliest-ending occurrence.
	want, upTo := -1, 0
	for i, p := range pieces {
		upTo += len(p)
		if upTo >= end {
			want = i
			break
		}
	}
	if echoAt != want {
		t.Fatalf("%q in pieces %q: echo at piece %d, want %d", stream, pieces, echoAt, want)
	}
	start := len(stream)
	for _, n := range g.needles {
		if i := bytes.Index(stream, n); i >= 0 {
			start = min(start, i)
		}
	}
	if len(sent) > start || !bytes.Equal(sent, stream[:len(sent)]) {
		t.Fatalf("%q in pieces %q: passed %q, which reaches into the echo at %d", stream,
			pieces, sent, start)
	}
}

func TestEchoGuardCases(t *testing.T) {
	const tok = "ctok_ct/k"
	tests := []struct {
		name   string
		stream string
		cuts   []int
	}{
		{"clean", "RIFF audio bytes", []int{3, 9}},
		{"whole echo", "audio ctok_ct/k audio", nil},
		{"echo split in two", "audio ctok_ct/k audio", []int{9}},
		{"echo split at every byte", "ctok_ct/k", []int{1, 2, 3, 4, 5, 6, 7, 8}},
		{"escaped echo", `{"t":"ctok_ct%2Fk"}`, []int{12}},
		{"a prefix at the end", "audio ctok_ct/", []int{8}},
		{"overlapping prefixes", "ctok_ctok_ct/k", []int{5, 7}},
		{"a near miss then an echo", "ctok_ct/x ctok_ct/k", []int{4, 12}},
		{"a prefix held across tiny pieces", "ctok_ct/x", []int{1, 2, 3, 4, 5, 6, 7, 8}},
		{"empty pieces", "ab ctok_ct/k", []int{0, 0, 3, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRelay(t, tok, []byte(tt.stream), tt.cuts)
		})
	}
}

// TestEchoGuardRandomStreams runs the contract over many streams made of token pieces,
// cut at random, so that prefixes, overlaps and splits meet in every combination.
func TestEchoGuardRandomStreams(t *testing.T) {
	const tok = "ctok_ct/k"
	alphabet := []string{"c", "t", "o", "k", "_", "/", "%2F", "x", "ctok_", "ct/", "ct%2F"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20_000 {
		var b []byte
		for range rng.IntN(12) {
			b = append(b, alphabet[rng.IntN(len(alphabet))]...)
		}
		var cuts []int
		for c := 0; len(b) > 0 && c < len(b); c += 1 + rng.IntN(4) {
			cuts = append(cuts, c)
		}
		checkRelay(t, tok, b, cuts)
	}
}

func FuzzEchoGuard(f *testing.F) {
	f.Add([]byte("audio ctok_ct/k"), uint64(7))
	f.Add([]byte("ctok_ctok_ct%2Fk"), uint64(0x0301))
	f.Fuzz(func(t *testing.T, stream []byte, seed uint64) {
		rng := rand.New(rand.NewPCG(seed, seed))
		var cuts []int
		for c := 0; c < len(stream); c += 1 + rng.IntN(6) {
			cuts = append(cuts, c)
		}
		checkRelay(t, "ctok_ct/k", stream, cuts)
	})
}

func TestEchoGuardAllocatesNothingPerMessage(t *testing.T) {
	g := newEchoGuard("ctok_CANARY/proxy")
	msg := bytes.Repeat([]byte("RIFFctok_CANARY"), 1000)
	allocs := testing.AllocsPerRun(100, func() {
		_ = g.found(msg)
		_, _, _ = g.next(msg)
		_ = g.rest()
	})
	if allocs != 0 {
		t.Errorf("%v allocations per message", allocs)
	}
}

func TestNoSecretNoGuard(t *testing.T) {
	var g *echoGuard = newEchoGuard("")
	if g != nil || g.found([]byte("x")) || g.foundIn(nil) || g.rest() != nil {
		t.Fatal("a call without a token has a working guard")
	}
	first, second, echo := g.next([]byte("abc"))
	if first != nil || string(second) != "abc" || echo {
		t.Errorf("nil guard changed the stream")
	}
}
