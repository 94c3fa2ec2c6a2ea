// Package tonecode is the emulator's "voice": a deterministic code that turns text into
// audible tones and decodes those tones back into exactly the same text, so that speech
// round trips (TTS, then STT) can be tested end to end without a real model.
//
// The signal is a 20 ms symbol per byte. Each symbol plays two tones at once, one from a
// low band (500-2000 Hz) for the high nibble and one from a high band (2200-3700 Hz) for
// the low nibble, so everything stays below the 4 kHz Nyquist limit of 8 kHz telephone
// audio. Every tone is a multiple of 50 Hz and therefore completes whole cycles within a
// symbol: symbols join without clicks and a receiver aligned to a symbol sees exactly one
// tone per band.
//
// A frame is: an 8-symbol preamble that the decoder searches for, a header (3-byte length
// and a CRC-8 of it), the UTF-8 bytes of the text, and a CRC-16 over length and text. The
// decoder slides over the audio until it finds the preamble, so leading silence or noise,
// gain changes and resampling do not matter; a frame whose checksums fail is never
// returned as text.
//
// The package is pure computation: it never touches I/O, clocks or credentials.
package tonecode

import (
	"math"
	"time"
	"unicode"
	"unicode/utf8"
)

const (
	// SymbolRate is the number of symbols (bytes) per second. 20 ms is the shortest
	// symbol that is a whole number of samples at every Cartesia rate, 22050 Hz included.
	SymbolRate = 50

	// MinSampleRate is the lowest rate that carries the highest tone (3700 Hz).
	MinSampleRate = 8000

	// MaxTextBytes is the longest text a frame can carry (the header length has 3 bytes).
	MaxTextBytes = 1<<24 - 1
)

// Frame layout, in symbols.
const (
	preambleLen = 8
	headerLen   = 4 // 3 length bytes, big-endian, then a CRC-8 of them
	trailerLen  = 2 // CRC-16 of the length bytes and the text
	overhead    = preambleLen + headerLen + trailerLen
)

// Tone plan. Both tones at full amplitude peak at 0.44, which leaves room for the
// emulator's volume control (up to 2x) without clipping.
const (
	toneAmplitude = 0.22
	lowBaseHz     = 500
	highBaseHz    = 2200
	toneStepHz    = 100 // two DFT bins at 20 ms: neighbours stay apart after resampling
	bandTones     = 16
)

// preamble is the sync pattern, one byte per symbol like the payload. Its high nibbles
// (low-band tones) and low nibbles (high-band tones) are each all different, so the
// pattern shifted by whole symbols never matches itself.
var preamble = [preambleLen]byte{0x1C, 0xE3, 0x48, 0xB0, 0x7F, 0x26, 0xDA, 0x95}

// toneHz returns the frequencies played for symbol b.
func toneHz(b byte) (low, high int) {
	return lowBaseHz + toneStepHz*int(b>>4), highBaseHz + toneStepHz*int(b&0x0F)
}

// boundary is the first sample of symbol i at the given rate. Integer arithmetic keeps
// long signals from drifting; at rates that are multiples of 50 it is exact.
func boundary(i, rate int) int {
	return int(int64(i) * int64(rate) / SymbolRate)
}

// symbolAt is the symbol that sample pos belongs to: the largest i with boundary(i) <= pos.
// (pos*50/rate would disagree with boundary at rates that are not multiples of 50.)
func symbolAt(pos, rate int) int {
	return int((int64(pos+1)*SymbolRate - 1) / int64(rate))
}

// Signal is the tone code of one text at one sample rate, rendered on demand so that a
// streaming writer never holds a long clip in memory.
type Signal struct {
	rate    int
	symbols []byte // the whole frame, one byte per symbol
}

// NewSignal prepares the tone code of text at sampleRate. It panics if sampleRate is
// below MinSampleRate, which is a programming error: callers validate rates first.
//
// Limitation: text longer than MaxTextBytes (16 MiB, about 93 hours of audio) is cut at
// the last whole UTF-8 character that fits.
func NewSignal(text string, sampleRate int) *Signal {
	if sampleRate < MinSampleRate {
		panic("tonecode: sample rate below 8000 Hz cannot carry the tones")
	}
	text = clip(text)

	n := len(text)
	symbols := make([]byte, 0, overhead+n)
	symbols = append(symbols, preamble[:]...)

	length := []byte{byte(n >> 16), byte(n >> 8), byte(n)}
	symbols = append(symbols, length...)
	symbols = append(symbols, crc8(length))

	symbols = append(symbols, text...)
	sum := crc16(crc16(crc16Init, length), []byte(text))
	symbols = append(symbols, byte(sum>>8), byte(sum))

	return &Signal{rate: sampleRate, symbols: symbols}
}

// Len is the number of samples in the signal.
func (s *Signal) Len() int {
	return boundary(len(s.symbols), s.rate)
}

// SampleRate is the rate the signal was prepared for.
func (s *Signal) SampleRate() int {
	return s.rate
}

// Render writes samples [from, from+len(dst)) of the signal into dst and returns how many
// it wrote (fewer at the end of the signal, 0 past it).
func (s *Signal) Render(dst []float32, from int) int {
	total := s.Len()
	if from < 0 || from >= total {
		return 0
	}
	end := min(from+len(dst), total)

	for pos := from; pos < end; {
		sym := symbolAt(pos, s.rate)
		symEnd := min(boundary(sym+1, s.rate), end)
		low, high := toneHz(s.symbols[sym])
		s.renderTones(dst[pos-from:symEnd-from], pos, low, high)
		pos = symEnd
	}
	return end - from
}

// renderTones fills dst with the two tones starting at absolute sample pos. The phase is
// taken from absolute time, which is continuous across symbols because every tone
// completes whole cycles per symbol; within the run a rotating phasor replaces one sine
// call per sample.
func (s *Signal) renderTones(dst []float32, pos, low, high int) {
	var (
		rate      = int64(s.rate)
		lowStart  = 2 * math.Pi * float64(int64(low)*int64(pos)%rate) / float64(rate)
		highStart = 2 * math.Pi * float64(int64(high)*int64(pos)%rate) / float64(rate)
		lowStep   = 2 * math.Pi * float64(low) / float64(rate)
		highStep  = 2 * math.Pi * float64(high) / float64(rate)
	)
	ls, lc := math.Sincos(lowStart)
	hs, hc := math.Sincos(highStart)
	lds, ldc := math.Sincos(lowStep)
	hds, hdc := math.Sincos(highStep)

	for i := range dst {
		dst[i] = float32(toneAmplitude * (ls + hs))
		ls, lc = ls*ldc+lc*lds, lc*ldc-ls*lds
		hs, hc = hs*hdc+hc*hds, hc*hdc-hs*hds
	}
}

// Encode returns the tone code of text at sampleRate (see NewSignal for the limits).
// The empty text encodes to a 280 ms clip that decodes to "".
func Encode(text string, sampleRate int) []float32 {
	s := NewSignal(text, sampleRate)
	out := make([]float32, s.Len())
	s.Render(out, 0)
	return out
}

// Duration is how long the tone code of text plays.
func Duration(text string) time.Duration {
	return symbolTime(overhead + len(clip(text)))
}

// SampleCount is the number of samples in the tone code of text at sampleRate.
func SampleCount(text string, sampleRate int) int {
	return boundary(overhead+len(clip(text)), sampleRate)
}

// Span is a piece of the text and when its tones play, in seconds from the clip's start.
type Span struct {
	Text  string
	Start float64
	End   float64
}

// Timeline returns each word of text (a run of characters between Unicode spaces) with
// the time its bytes play. Times do not depend on the sample rate. The spans are what
// Cartesia calls word timestamps.
func Timeline(text string) []Span {
	text = clip(text)
	var words []Span
	start := -1
	for i, r := range text {
		switch {
		case unicode.IsSpace(r) && start >= 0:
			words = append(words, span(text, start, i))
			start = -1
		case !unicode.IsSpace(r) && start < 0:
			start = i
		}
	}
	if start >= 0 {
		words = append(words, span(text, start, len(text)))
	}
	return words
}

// Chars returns each character (rune) of text with the time its bytes play.
func Chars(text string) []Span {
	text = clip(text)
	chars := make([]Span, 0, utf8.RuneCountInString(text))
	for i, r := range text {
		chars = append(chars, span(text, i, i+utf8.RuneLen(r)))
	}
	return chars
}

// span times text[from:to], whose bytes are payload symbols from..to-1.
func span(text string, from, to int) Span {
	first := preambleLen + headerLen
	return Span{
		Text:  text[from:to],
		Start: symbolTime(first + from).Seconds(),
		End:   symbolTime(first + to).Seconds(),
	}
}

func symbolTime(symbols int) time.Duration {
	return time.Duration(symbols) * (time.Second / SymbolRate)
}

// clip cuts text to MaxTextBytes on a UTF-8 boundary.
func clip(text string) string {
	if len(text) <= MaxTextBytes {
		return text
	}
	end := MaxTextBytes
	for end > 0 && !utf8.RuneStart(text[end]) {
		end--
	}
	return text[:end]
}
