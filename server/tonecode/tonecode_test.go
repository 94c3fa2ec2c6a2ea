package tonecode

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/audio"
)

// rates are Cartesia's output sample rates (reference §4).
var rates = []int{8000, 16000, 22050, 24000, 44100, 48000}

var texts = map[string]string{
	"empty":       "",
	"ascii":       "Hello from the emulator.",
	"punctuation": `!"#$%&'()*+,-./:;<=>?@[\]^_{|}~` + "`\t\n",
	"accents":     "Ça va ? Über naïve café, señor. Ångström.",
	"emoji":       "👋🏽 hi 👨‍👩‍👧 🎉",
	"cjk":         "你好，世界。日本語のテキストです。한국어",
	"500 chars":   strings.Repeat("The quick brown fox jumps over the lazy dog. ", 12)[:500],
}

func TestRoundTripThroughEveryEncodingAndRate(t *testing.T) {
	for name, text := range texts {
		for _, rate := range rates {
			for _, enc := range audio.Encodings {
				data, err := audio.Encode(enc, Encode(text, rate))
				if err != nil {
					t.Fatal(err)
				}
				samples, err := audio.Decode(enc, data)
				if err != nil {
					t.Fatal(err)
				}

				got, err := Decode(samples, rate)
				if err != nil || got != text {
					t.Errorf("%s at %d Hz via %s: got %q, %v", name, rate, enc, got, err)
				}
			}
		}
	}
}

func TestEmptyTextIsAShortValidClip(t *testing.T) {
	clip := Encode("", 16000)
	if got := time.Duration(len(clip)) * time.Second / 16000; got != 280*time.Millisecond {
		t.Errorf("empty clip lasts %v, want 280ms", got)
	}
	got, err := Decode(clip, 16000)
	if err != nil || got != "" {
		t.Errorf("Decode = %q, %v; want \"\", nil", got, err)
	}
}

func TestSymbolsAreWholeSamplesAtEveryRate(t *testing.T) {
	for _, rate := range rates {
		for i := 0; i <= SymbolRate; i++ {
			if boundary(i, rate)*SymbolRate != i*rate {
				t.Fatalf("symbol %d at %d Hz starts at a fractional sample", i, rate)
			}
		}
	}
}

func TestSignalIsBandLimitedAndQuietEnoughForVolumeGain(t *testing.T) {
	const rate = 48000
	clip := Encode(texts["500 chars"], rate)

	// 0.44 peak leaves room for the emulator's 2x volume without clipping.
	var peak float64
	for _, s := range clip {
		peak = math.Max(peak, math.Abs(float64(s)))
	}
	if peak > 2*toneAmplitude+1e-6 || peak < toneAmplitude {
		t.Errorf("peak amplitude %v, want at most %v", peak, 2*toneAmplitude)
	}

	// Share of energy above 3.8 kHz, measured with one DFT bin per 50 Hz over the first
	// 40 symbols (transitions between symbols are the only source of it).
	d := newDemod(clip, rate)
	var above, total float64
	for sym := range 40 {
		w := d.window(boundary(sym, rate))
		var energy float64
		for _, v := range w {
			energy += float64(v) * float64(v)
		}
		total += energy
		for hz := 3800; hz < rate/2; hz += SymbolRate {
			coef := 2 * math.Cos(2*math.Pi*float64(hz)/rate)
			above += goertzel(w, coef) / (float64(len(w)) / 2)
		}
	}
	if share := above / total; share > 0.001 {
		t.Errorf("%.4f of the energy lies above 3.8 kHz, want < 0.001", share)
	}
}

func TestDecodeSearchesPastLeadingSilenceAndNoise(t *testing.T) {
	const text = "Find me after the noise."
	tests := []struct {
		name    string
		rate    int
		lead    int     // samples before the frame
		noise   float32 // peak of the leading noise; 0 = silence
		gain    float32
		tailing bool // noise after the frame as well
	}{
		{"offset 0", 8000, 0, 0, 1, false},
		{"one sample", 16000, 1, 0, 1, false},
		{"odd offset", 22050, 137, 0, 0.5, false},
		{"long silence", 24000, 3*24000 + 71, 0, 0.2, false},
		{"loud noise", 44100, 20011, 0.4, 1, true},
		{"noise at low gain", 48000, 4801, 0.05, 0.2, true},
		{"noise louder than the signal", 8000, 999, 0.5, 0.2, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, uint64(tt.lead)))
			clip := Encode(text, tt.rate)

			samples := noise(rng, tt.lead, tt.noise)
			for _, s := range clip {
				samples = append(samples, s*tt.gain)
			}
			if tt.tailing {
				samples = append(samples, noise(rng, tt.rate/3, tt.noise)...)
			}

			f, err := Find(samples, tt.rate, 0)
			if err != nil || f.Text != text {
				t.Fatalf("got %q, %v", f.Text, err)
			}
			if f.Start < tt.lead-2 || f.Start > tt.lead+2 {
				t.Errorf("frame found at sample %d, want %d", f.Start, tt.lead)
			}
			if want := f.Start + len(clip); f.End < want-2 || f.End > want+2 {
				t.Errorf("frame ends at %d, want %d", f.End, want)
			}
		})
	}
}

func TestDecodeAfterResampling(t *testing.T) {
	const text = "Resampled speech: ça marche, 你好 🎧"
	for _, from := range rates {
		for _, to := range rates {
			clip := audio.Resample(Encode(text, from), from, to)

			// The microphone path also quantises to 16 bits after resampling.
			data, _ := audio.Encode(audio.S16LE, clip)
			clip, _ = audio.Decode(audio.S16LE, data)

			got, err := Decode(clip, to)
			if err != nil || got != text {
				t.Errorf("%d -> %d Hz: got %q, %v", from, to, got, err)
			}
		}
	}
}

func TestDecodeThroughBackgroundNoise(t *testing.T) {
	// White noise at about 20 dB below the signal over the whole clip, then µ-law.
	const text = "Noisy line."
	rng := rand.New(rand.NewPCG(7, 7))
	clip := Encode(text, 8000)
	for i := range clip {
		clip[i] += (rng.Float32()*2 - 1) * 0.05
	}
	data, _ := audio.Encode(audio.MuLaw, clip)
	clip, _ = audio.Decode(audio.MuLaw, data)

	got, err := Decode(clip, 8000)
	if err != nil || got != text {
		t.Errorf("got %q, %v", got, err)
	}
}

func TestDecodeAllReturnsEveryFrameInOrder(t *testing.T) {
	const rate = 16000
	parts := []string{"first", "", "third, with ünïcode"}

	var samples []float32
	for i, p := range parts {
		samples = append(samples, make([]float32, 1000*(i+1)+3)...)
		samples = append(samples, Encode(p, rate)...)
	}

	frames, err := DecodeAll(samples, rate)
	if err != nil {
		t.Fatal(err)
	}
	if len(frames) != len(parts) {
		t.Fatalf("got %d frames, want %d", len(frames), len(parts))
	}
	for i, f := range frames {
		if f.Text != parts[i] {
			t.Errorf("frame %d = %q, want %q", i, f.Text, parts[i])
		}
		if i > 0 && f.Start < frames[i-1].End {
			t.Errorf("frame %d starts at %d, before frame %d ends at %d",
				i, f.Start, i-1, frames[i-1].End)
		}
	}
}

func TestDecodeWithoutFrameIsErrNoSignal(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	tone := make([]float32, 8000)
	for i := range tone {
		tone[i] = float32(0.3 * math.Sin(2*math.Pi*1000*float64(i)/8000))
	}
	// Symbols without a preamble: the payload alphabet alone never syncs.
	headless := Encode("just payload, no preamble here", 8000)[boundary(preambleLen, 8000):]

	tests := map[string][]float32{
		"nothing":      nil,
		"too short":    Encode("x", 8000)[:800],
		"silence":      make([]float32, 16000),
		"white noise":  noise(rng, 16000, 0.5),
		"single tone":  tone,
		"no preamble":  headless,
		"DC offset":    constant(16000, 0.3),
		"A-law silent": decoded(audio.ALaw, make([]float32, 8000)),
	}
	for name, samples := range tests {
		got, err := Decode(samples, 8000)
		if !errors.Is(err, ErrNoSignal) || got != "" {
			t.Errorf("%s: got %q, %v; want ErrNoSignal", name, got, err)
		}
	}
}

func TestCorruptionIsDetectedNeverReturned(t *testing.T) {
	const rate = 8000
	const text = "Checksummed!"

	// Every single-symbol error in header, payload and trailer is caught.
	for i := preambleLen; i < overhead+len(text); i++ {
		for _, flip := range []byte{0x01, 0x10, 0xFF} {
			s := NewSignal(text, rate)
			s.symbols[i] ^= flip
			clip := make([]float32, s.Len())
			s.Render(clip, 0)

			got, err := Decode(clip, rate)
			if !errors.Is(err, ErrCorrupt) || got != "" {
				t.Fatalf("symbol %d ^ %#02x: got %q, %v; want ErrCorrupt", i, flip, got, err)
			}
		}
	}

	clip := Encode(text, rate)
	cuts := map[string][]float32{
		"cut in the payload": clip[:len(clip)*2/3],
		"cut in the trailer": clip[:len(clip)-boundary(1, rate)],
		"silenced payload":   silence(clip, boundary(preambleLen+headerLen+3, rate), rate/10),
	}
	for name, samples := range cuts {
		got, err := Decode(samples, rate)
		if !errors.Is(err, ErrCorrupt) || got != "" {
			t.Errorf("%s: got %q, %v; want ErrCorrupt", name, got, err)
		}
	}
}

func TestDecodeRejectsLowSampleRate(t *testing.T) {
	if _, err := Decode(make([]float32, 100), 4000); !errors.Is(err, ErrSampleRate) {
		t.Errorf("err = %v, want ErrSampleRate", err)
	}
	defer func() {
		if recover() == nil {
			t.Error("Encode at 4000 Hz did not panic")
		}
	}()
	Encode("x", 4000)
}

func TestRenderInPiecesMatchesEncode(t *testing.T) {
	for _, rate := range []int{22050, 48000, 11025} {
		text := texts["accents"]
		whole := Encode(text, rate)
		s := NewSignal(text, rate)

		for _, chunk := range []int{rate / 10, 777, 1} {
			var pieces []float32
			buf := make([]float32, chunk)
			for from := 0; ; from += chunk {
				n := s.Render(buf, from)
				if n == 0 {
					break
				}
				pieces = append(pieces, buf[:n]...)
			}
			if len(pieces) != len(whole) {
				t.Fatalf("%d Hz, chunks of %d: %d samples, want %d",
					rate, chunk, len(pieces), len(whole))
			}
			for i := range whole {
				if math.Abs(float64(pieces[i]-whole[i])) > 1e-6 {
					t.Fatalf("%d Hz, chunks of %d: sample %d differs", rate, chunk, i)
				}
			}
		}
	}
}

func TestDurationAndSampleCountMatchTheClip(t *testing.T) {
	for name, text := range texts {
		for _, rate := range rates {
			n := len(Encode(text, rate))
			if got := SampleCount(text, rate); got != n {
				t.Errorf("%s at %d Hz: SampleCount %d, clip %d", name, rate, got, n)
			}
			want := time.Duration(n) * time.Second / time.Duration(rate)
			if Duration(text) != want {
				t.Errorf("%s at %d Hz: Duration %v, clip %v", name, rate, Duration(text), want)
			}
		}
	}
}

func TestTimelineSpansPlayTheirWords(t *testing.T) {
	const rate = 24000
	text := "  Hello there,\tworld 👋🏽\n你好 "
	want := []string{"Hello", "there,", "world", "👋🏽", "你好"}

	words := Timeline(text)
	if len(words) != len(want) {
		t.Fatalf("got %d words %v, want %v", len(words), words, want)
	}

	// Demodulating the samples inside each span gives back exactly that word.
	clip := Encode(text, rate)
	d := newDemod(clip, rate)
	for i, w := range words {
		if w.Text != want[i] {
			t.Errorf("word %d = %q, want %q", i, w.Text, want[i])
		}
		first := int(math.Round(w.Start * rate))
		last := int(math.Round(w.End * rate))
		var got []byte
		for at := first; at < last; at += d.symLen {
			got = append(got, d.symbol(at))
		}
		if string(got) != w.Text {
			t.Errorf("span %v..%v plays %q, want %q", w.Start, w.End, got, w.Text)
		}
	}

	// "Hello" is bytes 2..6 of the text: symbols 14..18 after preamble and header.
	if words[0].Start != 0.28 || words[0].End != 0.38 {
		t.Errorf("Hello spans %v..%v, want 0.28..0.38", words[0].Start, words[0].End)
	}
}

func TestCharsCoverEveryRune(t *testing.T) {
	chars := Chars("aé🎉")
	want := []Span{
		{"a", 0.24, 0.26},
		{"é", 0.26, 0.30},
		{"🎉", 0.30, 0.38},
	}
	if len(chars) != len(want) {
		t.Fatalf("got %v, want %v", chars, want)
	}
	for i := range want {
		if chars[i].Text != want[i].Text ||
			math.Abs(chars[i].Start-want[i].Start) > 1e-9 ||
			math.Abs(chars[i].End-want[i].End) > 1e-9 {
			t.Errorf("char %d = %v, want %v", i, chars[i], want[i])
		}
	}
	if len(Timeline("   ")) != 0 || len(Chars("")) != 0 {
		t.Error("blank text has words or characters")
	}
}

func TestOverlongTextIsClippedOnARuneBoundary(t *testing.T) {
	text := strings.Repeat("a", MaxTextBytes-1) + "é"
	if got := clip(text); got != text[:MaxTextBytes-1] {
		t.Errorf("clip kept %d bytes, want %d", len(got), MaxTextBytes-1)
	}
	if SampleCount(text, 8000) != boundary(overhead+MaxTextBytes-1, 8000) {
		t.Error("SampleCount does not use the clipped length")
	}
}

func FuzzRoundTrip(f *testing.F) {
	for _, text := range texts {
		f.Add(text, uint8(0))
	}
	f.Add("\xff\xfe invalid UTF-8 \x00", uint8(3))

	f.Fuzz(func(t *testing.T, text string, pick uint8) {
		if len(text) > 2000 {
			t.Skip("long inputs only slow the fuzzer down")
		}
		rate := rates[int(pick)%len(rates)]
		got, err := Decode(Encode(text, rate), rate)
		if err != nil || got != text {
			t.Fatalf("%q at %d Hz: got %q, %v", text, rate, got, err)
		}
	})
}

func BenchmarkEncode200CharsAt48k(b *testing.B) {
	text := texts["500 chars"][:200]
	for b.Loop() {
		Encode(text, 48000)
	}
}

func BenchmarkDecode200CharsAt48k(b *testing.B) {
	clip := append(make([]float32, 12345), Encode(texts["500 chars"][:200], 48000)...)
	b.ResetTimer()
	for b.Loop() {
		if _, err := Decode(clip, 48000); err != nil {
			b.Fatal(err)
		}
	}
}

func noise(rng *rand.Rand, n int, peak float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = (rng.Float32()*2 - 1) * peak
	}
	return out
}

func constant(n int, v float32) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = v
	}
	return out
}

func decoded(enc audio.Encoding, samples []float32) []float32 {
	data, _ := audio.Encode(enc, samples)
	out, _ := audio.Decode(enc, data)
	return out
}

func silence(clip []float32, from, n int) []float32 {
	out := append([]float32(nil), clip...)
	clear(out[from : from+n])
	return out
}
