// Package audio owns the byte layouts of mono audio that voxgate's emulator and tests speak:
// the four Cartesia PCM encodings (pcm_f32le, pcm_s16le, pcm_mulaw, pcm_alaw), the WAV
// container around them, and a linear resampler.
//
// Samples are float32 in the range -1..1 everywhere in this package. It never touches the
// network, files or any credential, and knows nothing about what the audio means (see
// package tonecode for that).
package audio

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// Encoding names a PCM sample encoding, spelled as Cartesia's output_format.encoding.
type Encoding string

// The encodings Cartesia's TTS can produce (reference §4).
const (
	F32LE Encoding = "pcm_f32le" // IEEE 754 float32, little-endian
	S16LE Encoding = "pcm_s16le" // signed 16-bit integer, little-endian
	MuLaw Encoding = "pcm_mulaw" // ITU-T G.711 µ-law, 8 bits
	ALaw  Encoding = "pcm_alaw"  // ITU-T G.711 A-law, 8 bits
)

// Encodings lists every supported encoding, in a stable order (useful for tests and docs).
var Encodings = []Encoding{F32LE, S16LE, MuLaw, ALaw}

// ErrEncoding is returned (wrapped) for an encoding this package does not know.
var ErrEncoding = errors.New("audio: unsupported encoding")

// ErrPartialSample is returned (wrapped) when encoded bytes end in the middle of a sample.
var ErrPartialSample = errors.New("audio: data ends inside a sample")

// Valid reports whether e is one of the supported encodings.
func (e Encoding) Valid() bool {
	return e.BytesPerSample() > 0
}

// BytesPerSample is the size of one encoded sample, or 0 for an unknown encoding.
func (e Encoding) BytesPerSample() int {
	switch e {
	case F32LE:
		return 4
	case S16LE:
		return 2
	case MuLaw, ALaw:
		return 1
	}
	return 0
}

// Encode converts samples to bytes in encoding e. Integer encodings clip values outside
// -1..1; pcm_f32le stores the values unchanged.
func Encode(e Encoding, samples []float32) ([]byte, error) {
	size := e.BytesPerSample()
	if size == 0 {
		return nil, fmt.Errorf("audio: encode %q: %w", e, ErrEncoding)
	}

	out := make([]byte, len(samples)*size)
	AppendEncoded(out[:0], e, samples)
	return out, nil
}

// AppendEncoded appends samples encoded as e to dst and returns the extended slice. It
// appends nothing for an unknown encoding; callers check e.Valid first. It exists so that
// streaming writers can reuse one buffer per chunk.
func AppendEncoded(dst []byte, e Encoding, samples []float32) []byte {
	switch e {
	case F32LE:
		for _, s := range samples {
			dst = binary.LittleEndian.AppendUint32(dst, math.Float32bits(s))
		}
	case S16LE:
		for _, s := range samples {
			dst = binary.LittleEndian.AppendUint16(dst, uint16(ToInt16(s)))
		}
	case MuLaw:
		for _, s := range samples {
			dst = append(dst, MuLawEncode(ToInt16(s)))
		}
	case ALaw:
		for _, s := range samples {
			dst = append(dst, ALawEncode(ToInt16(s)))
		}
	}
	return dst
}

// Decode converts bytes in encoding e back to samples.
func Decode(e Encoding, data []byte) ([]float32, error) {
	size := e.BytesPerSample()
	if size == 0 {
		return nil, fmt.Errorf("audio: decode %q: %w", e, ErrEncoding)
	}
	if len(data)%size != 0 {
		return nil, fmt.Errorf("audio: decode %d bytes of %s: %w", len(data), e, ErrPartialSample)
	}

	out := make([]float32, len(data)/size)
	switch e {
	case F32LE:
		for i := range out {
			out[i] = math.Float32frombits(binary.LittleEndian.Uint32(data[4*i:]))
		}
	case S16LE:
		for i := range out {
			out[i] = FromInt16(int16(binary.LittleEndian.Uint16(data[2*i:])))
		}
	case MuLaw:
		for i, b := range data {
			out[i] = FromInt16(MuLawDecode(b))
		}
	case ALaw:
		for i, b := range data {
			out[i] = FromInt16(ALawDecode(b))
		}
	}
	return out, nil
}

// ToInt16 converts a sample to 16-bit PCM. The scale is 32768 (not 32767) so that
// FromInt16 followed by ToInt16 returns every int16 value unchanged; +1.0 clips to 32767.
func ToInt16(s float32) int16 {
	v := math.Round(float64(s) * 32768)
	switch {
	case v >= math.MaxInt16:
		return math.MaxInt16
	case v <= math.MinInt16:
		return math.MinInt16
	case math.IsNaN(v):
		return 0
	}
	return int16(v)
}

// FromInt16 converts 16-bit PCM to a sample in -1..1.
func FromInt16(v int16) float32 {
	return float32(v) / 32768
}
