package audio

import (
	"errors"
	"math"
	"testing"
)

// The expected codes and values below were produced by CPython's audioop module, an
// implementation of G.711 independent of this one.
func TestG711KnownValues(t *testing.T) {
	tests := []struct {
		pcm   int16
		mu, a byte
	}{
		{0, 0xFF, 0xD5},
		{1, 0xFF, 0xD5},
		{-1, 0x7E, 0x55},
		{8, 0xFE, 0xD5},
		{-9, 0x7D, 0x55},
		{100, 0xF2, 0xD3},
		{1000, 0xCE, 0xFA},
		{-1000, 0x4E, 0x7A},
		{4000, 0xAF, 0x9A},
		{12345, 0x97, 0xBD},
		{-12345, 0x17, 0x3D},
		{32767, 0x80, 0xAA},
		{-32768, 0x00, 0x2A},
	}
	for _, tt := range tests {
		if got := MuLawEncode(tt.pcm); got != tt.mu {
			t.Errorf("MuLawEncode(%d) = %#02x, want %#02x", tt.pcm, got, tt.mu)
		}
		if got := ALawEncode(tt.pcm); got != tt.a {
			t.Errorf("ALawEncode(%d) = %#02x, want %#02x", tt.pcm, got, tt.a)
		}
	}

	decoded := []struct {
		code   byte
		mu, a  int16
		reason string
	}{
		{0x00, -32124, -5504, "most negative µ-law code"},
		{0x0F, -16764, -6784, "segment boundary"},
		{0x2A, -5372, -32256, "most negative A-law code"},
		{0x55, -716, -8, "smallest negative A-law code"},
		{0x7F, 0, -848, "µ-law negative zero"},
		{0x80, 32124, 5504, "most positive µ-law code"},
		{0xAA, 5372, 32256, "most positive A-law code"},
		{0xCE, 988, 440, "mid-range value"},
		{0xD5, 716, 8, "smallest positive A-law code"},
		{0xFF, 0, 848, "µ-law zero"},
	}
	for _, tt := range decoded {
		if got := MuLawDecode(tt.code); got != tt.mu {
			t.Errorf("MuLawDecode(%#02x) (%s) = %d, want %d", tt.code, tt.reason, got, tt.mu)
		}
		if got := ALawDecode(tt.code); got != tt.a {
			t.Errorf("ALawDecode(%#02x) (%s) = %d, want %d", tt.code, tt.reason, got, tt.a)
		}
	}
}

func TestG711CodesSurviveDecodeEncode(t *testing.T) {
	for c := 0; c < 256; c++ {
		code := byte(c)
		if got := ALawEncode(ALawDecode(code)); got != code {
			t.Errorf("A-law %#02x -> %d -> %#02x", code, ALawDecode(code), got)
		}
		// µ-law has two zeros (0x7F and 0xFF); zero encodes as the positive one.
		want := code
		if code == 0x7F {
			want = 0xFF
		}
		if got := MuLawEncode(MuLawDecode(code)); got != want {
			t.Errorf("µ-law %#02x -> %d -> %#02x, want %#02x", code, MuLawDecode(code), got, want)
		}
	}
}

func TestG711EncodingIsMonotonic(t *testing.T) {
	// Larger inputs never decode to smaller values: the companding keeps order.
	prevMu, prevA := int16(math.MinInt16), int16(math.MinInt16)
	for v := math.MinInt16; v <= math.MaxInt16; v++ {
		mu := MuLawDecode(MuLawEncode(int16(v)))
		a := ALawDecode(ALawEncode(int16(v)))
		if mu < prevMu || a < prevA {
			t.Fatalf("at %d: µ-law %d after %d, A-law %d after %d", v, mu, prevMu, a, prevA)
		}
		prevMu, prevA = mu, a
	}
}

func TestEncodeDecodeRoundTrip(t *testing.T) {
	samples := []float32{0, 0.5, -0.5, 0.25, -0.999, 0.999, 1.0 / 3, -1, 0.001}

	// Worst-case error per encoding: f32 is exact, s16 rounds to 1/32768, and G.711 keeps
	// about 4 significant bits (a relative error below 1/16 of the value plus a floor).
	tolerance := map[Encoding]func(x float32) float64{
		F32LE: func(float32) float64 { return 0 },
		S16LE: func(float32) float64 { return 0.5 / 32768 },
		MuLaw: func(x float32) float64 { return math.Abs(float64(x))/16 + 4.0/32768 },
		ALaw:  func(x float32) float64 { return math.Abs(float64(x))/16 + 16.0/32768 },
	}
	for _, enc := range Encodings {
		t.Run(string(enc), func(t *testing.T) {
			data, err := Encode(enc, samples)
			if err != nil {
				t.Fatal(err)
			}
			if len(data) != len(samples)*enc.BytesPerSample() {
				t.Fatalf("encoded %d samples into %d bytes", len(samples), len(data))
			}

			back, err := Decode(enc, data)
			if err != nil {
				t.Fatal(err)
			}
			for i, want := range samples {
				if diff := math.Abs(float64(back[i] - want)); diff > tolerance[enc](want) {
					t.Errorf("sample %d: %v came back as %v", i, want, back[i])
				}
			}
		})
	}
}

func TestInt16SurvivesFloatRoundTrip(t *testing.T) {
	for v := math.MinInt16; v <= math.MaxInt16; v++ {
		if got := ToInt16(FromInt16(int16(v))); got != int16(v) {
			t.Fatalf("%d came back as %d", v, got)
		}
	}
}

func TestIntegerEncodingsClip(t *testing.T) {
	tests := []struct {
		in   float32
		want int16
	}{
		{1.5, math.MaxInt16},
		{1, math.MaxInt16},
		{-1, math.MinInt16},
		{-7, math.MinInt16},
		{float32(math.NaN()), 0},
	}
	for _, tt := range tests {
		if got := ToInt16(tt.in); got != tt.want {
			t.Errorf("ToInt16(%v) = %d, want %d", tt.in, got, tt.want)
		}
	}
}

func TestDecodeRejectsBadInput(t *testing.T) {
	if _, err := Decode(S16LE, []byte{1, 2, 3}); !errors.Is(err, ErrPartialSample) {
		t.Errorf("3 bytes of s16le: err = %v, want ErrPartialSample", err)
	}
	if _, err := Decode(F32LE, []byte{1, 2}); !errors.Is(err, ErrPartialSample) {
		t.Errorf("2 bytes of f32le: err = %v, want ErrPartialSample", err)
	}
	if _, err := Decode("pcm_s24le", []byte{1, 2, 3}); !errors.Is(err, ErrEncoding) {
		t.Errorf("unknown encoding: err = %v, want ErrEncoding", err)
	}
	if _, err := Encode("mp3", nil); !errors.Is(err, ErrEncoding) {
		t.Errorf("encode mp3: err = %v, want ErrEncoding", err)
	}
}
