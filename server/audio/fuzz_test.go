package audio

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// FuzzParseWAV: any uploaded bytes either parse into a WAV no larger than the file
// allows, with samples in range, or fail with one of the package's typed errors.
func FuzzParseWAV(f *testing.F) {
	tone := sine(440, 8000, 64)
	for _, e := range Encodings {
		file, err := EncodeWAV(e, 8000, tone[:33]) // odd length: pad byte for 8-bit codes
		if err != nil {
			f.Fatal(err)
		}
		f.Add(file)
	}
	f.Add(rawWAV(formatExtensible, 2, 16000, 32, make([]byte, 16)))
	f.Add(rawWAV(formatPCM, 3, 44100, 16, make([]byte, 12)))
	f.Add(rawWAV(formatPCM, 0, 8000, 16, nil))
	f.Add(rawWAV(formatPCM, 1, 8000, 24, make([]byte, 6)))
	streaming := rawWAV(formatPCM, 1, 8000, 16, make([]byte, 8))
	copy(streaming[len(streaming)-12:], []byte{0xFF, 0xFF, 0xFF, 0xFF})
	f.Add(streaming)
	f.Add([]byte("RIFF\x04\x00\x00\x00WAVE"))
	f.Add([]byte("RIFF\x00\x00\x00\x00WAVEdata\x00\x00\x00\x00fmt \x10\x00\x00\x00"))
	f.Add([]byte("not a wav"))

	typed := []error{ErrNotWAV, ErrTruncated, ErrUnsupported, ErrPartialSample, ErrEncoding}
	f.Fuzz(func(t *testing.T, data []byte) {
		w, err := ParseWAV(data)
		if err != nil {
			if !slices.ContainsFunc(typed, func(e error) bool { return errors.Is(err, e) }) {
				t.Fatalf("ParseWAV error %v wraps none of the typed errors", err)
			}
			if w != nil {
				t.Fatal("ParseWAV returned a WAV with its error")
			}
			return
		}

		if !w.Encoding.Valid() || w.Channels < 1 || w.SampleRate < 1 {
			t.Fatalf("parsed %s, %d channels at %d Hz", w.Encoding, w.Channels, w.SampleRate)
		}
		// Size cap: the samples come from the file's own bytes, never more.
		if len(w.Samples)*w.Channels*w.Encoding.BytesPerSample() > len(data) {
			t.Fatalf("%d samples of %d channels from a %d-byte file", len(w.Samples),
				w.Channels, len(data))
		}
		if w.Encoding == F32LE {
			return // float files carry whatever values their writer chose
		}
		for i, s := range w.Samples {
			if s < -1 || s > 1 || math.IsNaN(float64(s)) {
				t.Fatalf("sample %d is %v, outside -1..1", i, s)
			}
		}
	})
}

// FuzzWAVRoundTrip: whatever samples a writer has, EncodeWAV then ParseWAV gives back
// exactly what the encoding can hold.
func FuzzWAVRoundTrip(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 255, 128, 7}, uint8(0), uint32(8000))
	f.Add([]byte{}, uint8(1), uint32(48000))
	f.Add([]byte{0x80, 0x7f, 0x00, 0xff, 0x01}, uint8(2), uint32(1))
	f.Add([]byte{9, 9, 9, 9, 9, 9, 9, 9, 9}, uint8(3), uint32(22050))

	f.Fuzz(func(t *testing.T, raw []byte, pick uint8, rate uint32) {
		e := Encodings[int(pick)%len(Encodings)]
		if rate == 0 || rate > 1<<20 {
			rate = 8000
		}
		samples := make([]float32, len(raw)/2)
		for i := range samples {
			samples[i] = FromInt16(int16(uint16(raw[2*i]) | uint16(raw[2*i+1])<<8))
		}

		file, err := EncodeWAV(e, int(rate), samples)
		if err != nil {
			t.Fatal(err)
		}
		w, err := ParseWAV(file)
		if err != nil {
			t.Fatalf("ParseWAV of EncodeWAV(%s, %d, %d samples): %v", e, rate, len(samples), err)
		}
		stored, _ := Encode(e, samples)
		want, _ := Decode(e, stored)
		if w.Encoding != e || w.SampleRate != int(rate) || w.Channels != 1 ||
			!slices.Equal(w.Samples, want) {
			t.Fatalf("round trip of %d %s samples at %d Hz gave %s %d Hz %d channels, %d samples",
				len(samples), e, rate, w.Encoding, w.SampleRate, w.Channels, len(w.Samples))
		}
	})
}
