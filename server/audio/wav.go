package audio

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// WAVE format tags (the wFormatTag field of the fmt chunk).
const (
	formatPCM        = 0x0001
	formatIEEEFloat  = 0x0003
	formatALaw       = 0x0006
	formatMuLaw      = 0x0007
	formatExtensible = 0xFFFE
)

// Typed errors of ParseWAV; the returned errors wrap one of them with details.
var (
	// ErrNotWAV means the data is not a RIFF/WAVE file at all.
	ErrNotWAV = errors.New("audio: not a RIFF WAVE file")
	// ErrTruncated means the file ends before a chunk it declares.
	ErrTruncated = errors.New("audio: truncated WAV file")
	// ErrUnsupported means a well-formed WAV in a layout this package does not decode.
	ErrUnsupported = errors.New("audio: unsupported WAV format")
)

// WAV is a decoded WAV file, mixed down to mono.
type WAV struct {
	Encoding   Encoding  // how the samples were stored
	SampleRate int       // samples per second
	Channels   int       // channels in the file; Samples holds their average
	Samples    []float32 // one sample per frame, -1..1
}

// WAVHeader returns the RIFF header for a mono WAV file holding n samples of encoding e at
// sampleRate, for writers that stream the data after it. When WAVPadding(e, n) is 1 the
// writer must add one zero byte after the data (RIFF chunks have even sizes).
//
// Non-PCM formats (float, µ-law, A-law) get the 18-byte fmt chunk and the fact chunk that
// the WAVE specification requires for them.
func WAVHeader(e Encoding, sampleRate, n int) ([]byte, error) {
	size := e.BytesPerSample()
	if size == 0 {
		return nil, fmt.Errorf("audio: WAV header for %q: %w", e, ErrEncoding)
	}
	if sampleRate <= 0 || n < 0 {
		return nil, fmt.Errorf("audio: WAV header: sample rate %d and count %d must be positive",
			sampleRate, n)
	}

	dataSize := uint64(n) * uint64(size)
	tag := uint16(formatPCM)
	switch e {
	case F32LE:
		tag = formatIEEEFloat
	case MuLaw:
		tag = formatMuLaw
	case ALaw:
		tag = formatALaw
	}
	fmtSize := uint32(16)
	if tag != formatPCM {
		fmtSize = 18
	}

	// RIFF size counts everything after its own 8 bytes: "WAVE", every chunk, the pad.
	riffSize := 4 + (8 + uint64(fmtSize)) + (8 + dataSize) + uint64(WAVPadding(e, n))
	if tag != formatPCM {
		riffSize += 12
	}
	if riffSize > math.MaxUint32 {
		return nil, fmt.Errorf("audio: WAV header: %d samples do not fit a RIFF file", n)
	}

	var h bytes.Buffer
	le := binary.LittleEndian
	h.WriteString("RIFF")
	_ = binary.Write(&h, le, uint32(riffSize))
	h.WriteString("WAVE")

	h.WriteString("fmt ")
	_ = binary.Write(&h, le, fmtSize)
	_ = binary.Write(&h, le, tag)
	_ = binary.Write(&h, le, uint16(1)) // mono
	_ = binary.Write(&h, le, uint32(sampleRate))
	_ = binary.Write(&h, le, uint32(sampleRate*size)) // bytes per second
	_ = binary.Write(&h, le, uint16(size))            // block align
	_ = binary.Write(&h, le, uint16(8*size))          // bits per sample
	if tag != formatPCM {
		_ = binary.Write(&h, le, uint16(0)) // no extra format bytes
		h.WriteString("fact")
		_ = binary.Write(&h, le, uint32(4))
		_ = binary.Write(&h, le, uint32(n))
	}

	h.WriteString("data")
	_ = binary.Write(&h, le, uint32(dataSize))
	return h.Bytes(), nil
}

// WAVPadding is the number of zero bytes (0 or 1) that follow n samples of encoding e in
// a WAV file, because RIFF chunks must have an even size.
func WAVPadding(e Encoding, n int) int {
	return (n * e.BytesPerSample()) & 1
}

// EncodeWAV returns a complete mono WAV file holding samples in encoding e.
func EncodeWAV(e Encoding, sampleRate int, samples []float32) ([]byte, error) {
	header, err := WAVHeader(e, sampleRate, len(samples))
	if err != nil {
		return nil, err
	}

	out := make([]byte, 0, len(header)+len(samples)*e.BytesPerSample()+1)
	out = append(out, header...)
	out = AppendEncoded(out, e, samples)
	if WAVPadding(e, len(samples)) == 1 {
		out = append(out, 0)
	}
	return out, nil
}

// ParseWAV decodes a WAV file in any of the four encodings (plain or WAVE_FORMAT_EXTENSIBLE
// headers). Multi-channel files are mixed down to mono by averaging the channels.
//
// A data chunk whose declared size is 0xFFFFFFFF (written by streaming encoders that did not
// know the length) runs to the end of the file; any other data chunk that is longer than
// the file is an ErrTruncated.
func ParseWAV(data []byte) (*WAV, error) {
	if len(data) < 12 {
		return nil, fmt.Errorf("audio: parse WAV: %d bytes is shorter than a RIFF header: %w",
			len(data), ErrNotWAV)
	}
	if string(data[0:4]) != "RIFF" || string(data[8:12]) != "WAVE" {
		return nil, fmt.Errorf("audio: parse WAV: missing RIFF/WAVE magic: %w", ErrNotWAV)
	}

	var (
		format   *wavFormat
		rest     = data[12:]
		le       = binary.LittleEndian
		dataSeen bool
		payload  []byte
	)
	for len(rest) > 0 {
		if len(rest) < 8 {
			return nil, fmt.Errorf("audio: parse WAV: %d stray bytes after the last chunk: %w",
				len(rest), ErrTruncated)
		}
		id := string(rest[0:4])
		size := uint64(le.Uint32(rest[4:8]))
		rest = rest[8:]

		if id == "data" && size == math.MaxUint32 {
			size = uint64(len(rest))
		}
		if size > uint64(len(rest)) {
			return nil, fmt.Errorf("audio: parse WAV: %q chunk declares %d bytes, %d remain: %w",
				id, size, len(rest), ErrTruncated)
		}
		body := rest[:size]
		rest = rest[size:]
		if size%2 == 1 && len(rest) > 0 {
			rest = rest[1:] // pad byte
		}

		switch id {
		case "fmt ":
			f, err := parseFormat(body)
			if err != nil {
				return nil, err
			}
			format = f
		case "data":
			if format == nil {
				return nil, fmt.Errorf("audio: parse WAV: data chunk before fmt chunk: %w",
					ErrUnsupported)
			}
			payload, dataSeen = body, true
		}
		if dataSeen {
			break // chunks after the audio (LIST, id3) do not matter
		}
	}
	if format == nil {
		return nil, fmt.Errorf("audio: parse WAV: no fmt chunk: %w", ErrTruncated)
	}
	if !dataSeen {
		return nil, fmt.Errorf("audio: parse WAV: no data chunk: %w", ErrTruncated)
	}

	frame := format.channels * format.encoding.BytesPerSample()
	if len(payload)%frame != 0 {
		return nil, fmt.Errorf("audio: parse WAV: %d data bytes are not whole %d-byte frames: %w",
			len(payload), frame, ErrTruncated)
	}
	interleaved, err := Decode(format.encoding, payload)
	if err != nil {
		return nil, fmt.Errorf("audio: parse WAV: %w", err)
	}

	return &WAV{
		Encoding:   format.encoding,
		SampleRate: format.sampleRate,
		Channels:   format.channels,
		Samples:    mixDown(interleaved, format.channels),
	}, nil
}

// wavFormat is what ParseWAV needs from the fmt chunk.
type wavFormat struct {
	encoding   Encoding
	sampleRate int
	channels   int
}

func parseFormat(body []byte) (*wavFormat, error) {
	if len(body) < 16 {
		return nil, fmt.Errorf("audio: parse WAV: fmt chunk has %d bytes, need 16: %w",
			len(body), ErrTruncated)
	}
	le := binary.LittleEndian
	tag := le.Uint16(body[0:2])
	channels := int(le.Uint16(body[2:4]))
	rate := int(le.Uint32(body[4:8]))
	bits := le.Uint16(body[14:16])

	// WAVE_FORMAT_EXTENSIBLE keeps the real tag in the first two bytes of its sub-format GUID.
	if tag == formatExtensible {
		if len(body) < 26 {
			return nil, fmt.Errorf("audio: parse WAV: extensible fmt chunk has %d bytes, "+
				"need 26: %w", len(body), ErrTruncated)
		}
		tag = le.Uint16(body[24:26])
	}

	var enc Encoding
	switch {
	case tag == formatPCM && bits == 16:
		enc = S16LE
	case tag == formatIEEEFloat && bits == 32:
		enc = F32LE
	case tag == formatMuLaw && bits == 8:
		enc = MuLaw
	case tag == formatALaw && bits == 8:
		enc = ALaw
	default:
		return nil, fmt.Errorf("audio: parse WAV: format tag %#04x with %d bits per sample: %w",
			tag, bits, ErrUnsupported)
	}
	if channels < 1 {
		return nil, fmt.Errorf("audio: parse WAV: %d channels: %w", channels, ErrUnsupported)
	}
	if rate < 1 {
		return nil, fmt.Errorf("audio: parse WAV: sample rate %d: %w", rate, ErrUnsupported)
	}
	return &wavFormat{encoding: enc, sampleRate: rate, channels: channels}, nil
}

// mixDown averages interleaved frames of the given channel count into one channel.
func mixDown(interleaved []float32, channels int) []float32 {
	if channels == 1 {
		return interleaved
	}
	out := make([]float32, len(interleaved)/channels)
	for i := range out {
		var sum float32
		for _, s := range interleaved[i*channels : (i+1)*channels] {
			sum += s
		}
		out[i] = sum / float32(channels)
	}
	return out
}
