package audio

import (
	"math"
	"testing"
)

func TestResampleLengthAndEndpoints(t *testing.T) {
	tests := []struct {
		from, to, in, out int
	}{
		{8000, 48000, 8000, 47995},   // the last output sample lands on the last input sample
		{48000, 8000, 48000, 8000},   // 47999/6 = 7999.83 -> 8000 samples
		{22050, 48000, 441, 958},     // 440*48000/22050 = 957.8 -> 957 + 1
		{24000, 24000, 1000, 1000},   // same rate is a copy
		{44100, 16000, 1, 1},         // one sample stays one sample
		{16000, 44100, 160, 439},     // 159*44100/16000 = 438.2 -> 439
		{48000, 22050, 960, 441},     // 959*22050/48000 = 440.5 -> 441
		{8000, 8000, 0, 0},           // empty stays empty
		{8000, 16000, 2, 3},          // 0, midpoint, 1
		{16000, 8000, 5, 3},          // every second sample
		{16000, 24000, 3, 4},         // 2*24000/16000 = 3 -> 4
		{24000, 16000, 4, 3},         // 3*16000/24000 = 2 -> 3
		{44100, 48000, 44100, 47999}, // 44099*48000/44100 = 47998.9 -> 47998 + 1
	}
	for _, tt := range tests {
		in := make([]float32, tt.in)
		for i := range in {
			in[i] = float32(i)
		}
		out := Resample(in, tt.from, tt.to)
		if len(out) != tt.out {
			t.Errorf("%d->%d Hz, %d samples: got %d samples, want %d",
				tt.from, tt.to, tt.in, len(out), tt.out)
			continue
		}
		if tt.out > 0 && out[0] != 0 {
			t.Errorf("%d->%d Hz: first sample %v, want 0", tt.from, tt.to, out[0])
		}
	}
}

func TestResampleInterpolatesLinearly(t *testing.T) {
	got := Resample([]float32{0, 1, 0, -1}, 8000, 16000)
	want := []float32{0, 0.5, 1, 0.5, 0, -0.5, -1}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
}

func TestResampleKeepsToneFrequency(t *testing.T) {
	// A 1 kHz tone at 22050 Hz resampled to 48 kHz still has 1000 cycles per second:
	// count rising zero crossings over one second.
	in := sine(1000, 22050, 22050)
	out := Resample(in, 22050, 48000)

	crossings := 0
	for i := 1; i < len(out); i++ {
		if out[i-1] < 0 && out[i] >= 0 {
			crossings++
		}
	}
	if crossings < 999 || crossings > 1000 {
		t.Errorf("%d rising zero crossings in one second, want 1000", crossings)
	}

	var peak float64
	for _, s := range out {
		peak = math.Max(peak, math.Abs(float64(s)))
	}
	if peak < 0.49 || peak > 0.5 {
		t.Errorf("peak %v, want about 0.5", peak)
	}
}

func TestResampleRejectsBadRates(t *testing.T) {
	if out := Resample([]float32{1, 2}, 0, 8000); out != nil {
		t.Errorf("from 0 Hz: got %v, want nil", out)
	}
	if out := Resample([]float32{1, 2}, 8000, -1); out != nil {
		t.Errorf("to -1 Hz: got %v, want nil", out)
	}
}
