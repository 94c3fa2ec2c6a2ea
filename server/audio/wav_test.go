package audio

import (
	"encoding/binary"
	"errors"
	"math"
	"testing"
)

func TestWAVHeaderFields(t *testing.T) {
	tests := []struct {
		enc        Encoding
		n          int
		tag        uint16
		fmtSize    uint32
		bits       uint16
		headerSize int
		pad        int
	}{
		{S16LE, 100, formatPCM, 16, 16, 44, 0},
		{F32LE, 100, formatIEEEFloat, 18, 32, 58, 0},
		{MuLaw, 101, formatMuLaw, 18, 8, 58, 1},
		{ALaw, 100, formatALaw, 18, 8, 58, 0},
	}
	le := binary.LittleEndian
	for _, tt := range tests {
		t.Run(string(tt.enc), func(t *testing.T) {
			h, err := WAVHeader(tt.enc, 24000, tt.n)
			if err != nil {
				t.Fatal(err)
			}
			if len(h) != tt.headerSize {
				t.Fatalf("header is %d bytes, want %d", len(h), tt.headerSize)
			}

			size := tt.enc.BytesPerSample()
			dataSize := tt.n * size
			fileSize := len(h) + dataSize + WAVPadding(tt.enc, tt.n)
			if WAVPadding(tt.enc, tt.n) != tt.pad {
				t.Errorf("padding = %d, want %d", WAVPadding(tt.enc, tt.n), tt.pad)
			}
			checks := []struct {
				name      string
				got, want uint64
			}{
				{"RIFF size", uint64(le.Uint32(h[4:])), uint64(fileSize - 8)},
				{"fmt size", uint64(le.Uint32(h[16:])), uint64(tt.fmtSize)},
				{"format tag", uint64(le.Uint16(h[20:])), uint64(tt.tag)},
				{"channels", uint64(le.Uint16(h[22:])), 1},
				{"sample rate", uint64(le.Uint32(h[24:])), 24000},
				{"byte rate", uint64(le.Uint32(h[28:])), uint64(24000 * size)},
				{"block align", uint64(le.Uint16(h[32:])), uint64(size)},
				{"bits", uint64(le.Uint16(h[34:])), uint64(tt.bits)},
				{"data size", uint64(le.Uint32(h[len(h)-4:])), uint64(dataSize)},
			}
			for _, c := range checks {
				if c.got != c.want {
					t.Errorf("%s = %d, want %d", c.name, c.got, c.want)
				}
			}
			if string(h[0:4]) != "RIFF" || string(h[8:16]) != "WAVEfmt " ||
				string(h[len(h)-8:len(h)-4]) != "data" {
				t.Errorf("chunk ids wrong: %q", h)
			}
			if tt.tag != formatPCM {
				if string(h[38:42]) != "fact" || le.Uint32(h[46:]) != uint32(tt.n) {
					t.Errorf("fact chunk wrong: %q", h[38:50])
				}
			}
		})
	}
}

func TestWAVRoundTripEveryEncoding(t *testing.T) {
	samples := sine(441, 8000, 1001) // odd length exercises the pad byte
	for _, enc := range Encodings {
		t.Run(string(enc), func(t *testing.T) {
			file, err := EncodeWAV(enc, 8000, samples)
			if err != nil {
				t.Fatal(err)
			}
			w, err := ParseWAV(file)
			if err != nil {
				t.Fatal(err)
			}
			if w.Encoding != enc || w.SampleRate != 8000 || w.Channels != 1 {
				t.Fatalf("parsed %s %d Hz %d ch", w.Encoding, w.SampleRate, w.Channels)
			}
			if len(w.Samples) != len(samples) {
				t.Fatalf("parsed %d samples, wrote %d", len(w.Samples), len(samples))
			}
			want, _ := Encode(enc, samples)
			got, _ := Encode(enc, w.Samples)
			if string(want) != string(got) {
				t.Error("samples changed through the WAV container")
			}
		})
	}
}

func TestParseWAVStereoIsMixedDown(t *testing.T) {
	file := rawWAV(formatPCM, 2, 16000, 16, []byte{
		0x00, 0x40, 0x00, 0x00, // L = 0.5, R = 0
		0x00, 0xC0, 0x00, 0xC0, // L = -0.5, R = -0.5
	})
	w, err := ParseWAV(file)
	if err != nil {
		t.Fatal(err)
	}
	if w.Channels != 2 || len(w.Samples) != 2 || w.Samples[0] != 0.25 || w.Samples[1] != -0.5 {
		t.Errorf("got %d channels, samples %v; want 2 channels, [0.25 -0.5]", w.Channels, w.Samples)
	}
}

func TestParseWAVExtensibleFormat(t *testing.T) {
	file := rawWAV(formatExtensible, 1, 48000, 32, make([]byte, 8))
	w, err := ParseWAV(file)
	if err != nil {
		t.Fatal(err)
	}
	if w.Encoding != F32LE || len(w.Samples) != 2 {
		t.Errorf("got %s with %d samples, want pcm_f32le with 2", w.Encoding, len(w.Samples))
	}
}

func TestParseWAVStreamingSizeRunsToEnd(t *testing.T) {
	file, _ := EncodeWAV(S16LE, 8000, []float32{0.1, 0.2, 0.3})
	binary.LittleEndian.PutUint32(file[40:], math.MaxUint32)
	w, err := ParseWAV(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(w.Samples) != 3 {
		t.Errorf("got %d samples, want 3", len(w.Samples))
	}
}

func TestParseWAVErrors(t *testing.T) {
	good, _ := EncodeWAV(S16LE, 8000, []float32{0.1, 0.2, 0.3, 0.4})
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrNotWAV},
		{"not RIFF", []byte("OggS and some more bytes"), ErrNotWAV},
		{"data cut short", good[:len(good)-3], ErrTruncated},
		{"header only, fmt cut", good[:30], ErrTruncated},
		{"no data chunk", good[:36], ErrTruncated},
		{"stray bytes", good[:39], ErrTruncated},
		{"8-bit unsigned PCM", rawWAV(formatPCM, 1, 8000, 8, []byte{1, 2}), ErrUnsupported},
		{"24-bit PCM", rawWAV(formatPCM, 1, 8000, 24, []byte{1, 2, 3}), ErrUnsupported},
		{"ADPCM", rawWAV(0x0002, 1, 8000, 4, []byte{1, 2}), ErrUnsupported},
		{"zero channels", rawWAV(formatPCM, 0, 8000, 16, []byte{1, 2}), ErrUnsupported},
		{"half a stereo frame", rawWAV(formatPCM, 2, 8000, 16, []byte{1, 2}), ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseWAV(tt.data)
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestWAVHeaderRejectsBadArguments(t *testing.T) {
	if _, err := WAVHeader("mp3", 8000, 1); !errors.Is(err, ErrEncoding) {
		t.Errorf("mp3: err = %v, want ErrEncoding", err)
	}
	if _, err := WAVHeader(S16LE, 0, 1); err == nil {
		t.Error("sample rate 0 accepted")
	}
	if _, err := WAVHeader(F32LE, 8000, math.MaxUint32/4); err == nil {
		t.Error("a data chunk over 4 GiB accepted")
	}
}

// rawWAV builds a WAV by hand so tests can describe layouts EncodeWAV never writes.
func rawWAV(tag uint16, channels, rate, bits int, data []byte) []byte {
	le := binary.LittleEndian
	var fmtChunk []byte
	fmtChunk = le.AppendUint16(fmtChunk, tag)
	fmtChunk = le.AppendUint16(fmtChunk, uint16(channels))
	fmtChunk = le.AppendUint32(fmtChunk, uint32(rate))
	fmtChunk = le.AppendUint32(fmtChunk, uint32(rate*channels*bits/8))
	fmtChunk = le.AppendUint16(fmtChunk, uint16(channels*bits/8))
	fmtChunk = le.AppendUint16(fmtChunk, uint16(bits))
	if tag == formatExtensible {
		fmtChunk = le.AppendUint16(fmtChunk, 22)           // cbSize
		fmtChunk = le.AppendUint16(fmtChunk, uint16(bits)) // valid bits
		fmtChunk = le.AppendUint32(fmtChunk, 0)            // channel mask
		fmtChunk = le.AppendUint16(fmtChunk, formatIEEEFloat)
		fmtChunk = append(fmtChunk, make([]byte, 14)...) // rest of the GUID
	}

	out := []byte("RIFF")
	out = le.AppendUint32(out, uint32(4+8+len(fmtChunk)+8+len(data)))
	out = append(out, "WAVEfmt "...)
	out = le.AppendUint32(out, uint32(len(fmtChunk)))
	out = append(out, fmtChunk...)
	out = append(out, "data"...)
	out = le.AppendUint32(out, uint32(len(data)))
	return append(out, data...)
}

func sine(freq float64, rate, n int) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(0.5 * math.Sin(2*math.Pi*freq*float64(i)/float64(rate)))
	}
	return out
}
