package audio

// Resample converts samples from one rate to another by linear interpolation. Output
// sample i sits at input position i*from/to, computed with integers so that long inputs
// do not drift.
//
// Limitation: there is no anti-aliasing filter, so downsampling folds content above the
// new Nyquist frequency back into the band. That is fine for voice-band audio such as the
// emulator's tone code (all tones below 3.8 kHz) but not for general music.
func Resample(samples []float32, from, to int) []float32 {
	if from <= 0 || to <= 0 || len(samples) == 0 {
		return nil
	}
	if from == to {
		return append([]float32(nil), samples...)
	}

	// The last output sample must not pass the last input sample.
	n := int(int64(len(samples)-1)*int64(to)/int64(from)) + 1
	out := make([]float32, n)
	for i := range out {
		pos := int64(i) * int64(from)
		idx := int(pos / int64(to))
		frac := float32(pos%int64(to)) / float32(to)

		if idx+1 >= len(samples) {
			out[i] = samples[len(samples)-1]
			continue
		}
		out[i] = samples[idx] + (samples[idx+1]-samples[idx])*frac
	}
	return out
}
