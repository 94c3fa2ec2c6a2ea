package tonecode

import (
	"errors"
	"fmt"
	"math"
)

// Typed errors of the decoder; returned errors wrap one of them with details.
var (
	// ErrNoSignal means no preamble was found: silence, noise or other audio.
	ErrNoSignal = errors.New("tonecode: no tone-code frame in the audio")
	// ErrCorrupt means a preamble was found but no frame after it passed its checksums
	// (damaged, cut short, or a false sync).
	ErrCorrupt = errors.New("tonecode: tone-code frame is corrupt")
	// ErrSampleRate means the audio's sample rate is too low to carry the tones.
	ErrSampleRate = errors.New("tonecode: sample rate below 8000 Hz")
)

// Detection thresholds. Scores are the share of a window's energy found in the two tones
// expected there: 1 for a clean aligned symbol, near 0 for noise or other symbols.
const (
	// prefilterScore lets a window through to the full preamble check. A window that
	// overlaps the first preamble symbol by a third already scores about this much.
	prefilterScore = 0.3
	// syncScore is the mean score over the preamble needed to try reading a frame.
	// Misalignment, noise and companding cost far less than half of the energy.
	syncScore = 0.5
	// silenceFloor is the mean square below which a window counts as silence (about
	// -60 dBFS), so that quantisation noise of silent audio is never scored.
	silenceFloor = 1e-6
	// minLastWindow is the share of its symbol that the final window may lose: linear
	// resampling can drop the last few samples of a clip.
	minLastWindow = 0.5
)

// Frame is one decoded message and where it sits in the audio.
type Frame struct {
	Text  string
	Start int // index of the first preamble sample
	End   int // index just past the checksum
}

// Decode returns the text of the first valid frame in samples. It searches for the
// preamble, so the frame may follow any amount of silence or noise, at any gain, and the
// audio may have been resampled as long as sampleRate is its current rate.
//
// Audio without a valid frame gives an error wrapping ErrNoSignal or ErrCorrupt, never
// partial text.
func Decode(samples []float32, sampleRate int) (string, error) {
	f, err := Find(samples, sampleRate, 0)
	if err != nil {
		return "", err
	}
	return f.Text, nil
}

// DecodeAll returns every valid frame in samples, in order. It returns an error only when
// there is none (wrapping ErrNoSignal or ErrCorrupt); damaged frames between valid ones
// are skipped.
func DecodeAll(samples []float32, sampleRate int) ([]Frame, error) {
	var frames []Frame
	for from := 0; ; {
		f, err := Find(samples, sampleRate, from)
		if err != nil {
			if len(frames) == 0 {
				return nil, err
			}
			return frames, nil
		}
		frames = append(frames, f)
		from = f.End
	}
}

// Find returns the first valid frame that starts at or after sample index from.
func Find(samples []float32, sampleRate, from int) (Frame, error) {
	if sampleRate < MinSampleRate {
		return Frame{}, fmt.Errorf("tonecode: decode at %d Hz: %w", sampleRate, ErrSampleRate)
	}
	d := newDemod(samples, sampleRate)

	// Windows step by an eighth of a symbol: one of them lies within 1/8 symbol of the
	// true start, where the first symbol scores far above prefilterScore.
	step := max(1, d.symLen/8)
	var corrupt error
	for at := max(from, 0); at+d.minFrame <= len(samples); at += step {
		if d.score(at, preamble[0]) < prefilterScore {
			continue
		}
		start, score := d.align(at, step)
		if score < syncScore {
			continue
		}

		f, err := d.frame(start)
		if err == nil {
			return f, nil
		}
		if corrupt == nil {
			corrupt = err
		}
		at = max(at, start) // align already looked at everything before start
	}

	if corrupt != nil {
		return Frame{}, corrupt
	}
	return Frame{}, fmt.Errorf("%w (%d samples at %d Hz searched)",
		ErrNoSignal, len(samples), sampleRate)
}

// demod measures tones in one buffer of audio.
type demod struct {
	x        []float32
	rate     int
	symLen   int // samples per analysis window: one symbol
	minFrame int // samples in the shortest frame (empty text)
	coef     [2 * bandTones]float64
}

func newDemod(x []float32, rate int) *demod {
	d := &demod{
		x:        x,
		rate:     rate,
		symLen:   rate / SymbolRate,
		minFrame: boundary(overhead, rate),
	}
	for i := range bandTones {
		low, high := toneHz(byte(i<<4 | i))
		d.coef[i] = 2 * math.Cos(2*math.Pi*float64(low)/float64(rate))
		d.coef[bandTones+i] = 2 * math.Cos(2*math.Pi*float64(high)/float64(rate))
	}
	return d
}

// window is the analysis window of the symbol starting at sample at, cut at the end of
// the audio.
func (d *demod) window(at int) []float32 {
	if at >= len(d.x) {
		return nil
	}
	return d.x[at:min(at+d.symLen, len(d.x))]
}

// score is the share of the window's energy in the two tones of symbol b.
func (d *demod) score(at int, b byte) float64 {
	w := d.window(at)
	if len(w) == 0 {
		return 0
	}

	// One pass measures the energy and both tones.
	c0, c1 := d.coef[b>>4], d.coef[bandTones+int(b&0x0F)]
	var energy, a1, a2, e1, e2 float64
	for _, v := range w {
		x := float64(v)
		energy += x * x
		a1, a2 = x+c0*a1-a2, a1
		e1, e2 = x+c1*e1-e2, e1
	}
	if energy/float64(len(w)) < silenceFloor {
		return 0
	}

	// A sine of amplitude A over the window has Goertzel power (A*n/2)^2 and energy
	// A^2*n/2, so power/(energy*n/2) is that tone's share of the energy.
	power := a1*a1 + a2*a2 - c0*a1*a2 + e1*e1 + e2*e2 - c1*e1*e2
	return power / (energy * float64(len(w)) / 2)
}

// preambleScore is the mean score of the preamble assumed to start at sample at.
func (d *demod) preambleScore(at int) float64 {
	var sum float64
	for i, b := range preamble {
		sum += d.score(at+boundary(i, d.rate), b)
	}
	return sum / preambleLen
}

// align finds the best preamble start near a window that matched the first preamble
// symbol: the true start lies between one step before it and one symbol after it.
// A coarse scan is followed by a halving search around the best coarse point.
func (d *demod) align(at, step int) (int, float64) {
	lo := max(0, at-step)
	hi := min(at+d.symLen, len(d.x)-d.minFrame)
	coarse := max(1, d.symLen/16)

	best, bestScore := lo, math.Inf(-1)
	for p := lo; p <= hi; p += coarse {
		if s := d.preambleScore(p); s > bestScore {
			best, bestScore = p, s
		}
	}
	for delta := coarse / 2; delta >= 1; delta /= 2 {
		for _, p := range [2]int{best - delta, best + delta} {
			if p < 0 || p > len(d.x)-d.minFrame {
				continue
			}
			if s := d.preambleScore(p); s > bestScore {
				best, bestScore = p, s
			}
		}
	}
	return best, bestScore
}

// frame reads and checks the frame whose preamble starts at sample start.
func (d *demod) frame(start int) (Frame, error) {
	sym := func(i int) byte { return d.symbol(start + boundary(i, d.rate)) }

	length := []byte{sym(preambleLen), sym(preambleLen + 1), sym(preambleLen + 2)}
	if crc8(length) != sym(preambleLen+3) {
		return Frame{}, fmt.Errorf("%w: header checksum mismatch at sample %d",
			ErrCorrupt, start)
	}
	n := int(length[0])<<16 | int(length[1])<<8 | int(length[2])

	end := start + boundary(overhead+n, d.rate)
	lastWindow := len(d.x) - (start + boundary(overhead+n-1, d.rate))
	if float64(lastWindow) < minLastWindow*float64(d.symLen) {
		return Frame{}, fmt.Errorf("%w: %d-byte frame at sample %d runs past the end of the audio",
			ErrCorrupt, n, start)
	}

	text := make([]byte, n)
	for i := range text {
		text[i] = sym(preambleLen + headerLen + i)
	}
	got := uint16(sym(overhead+n-2))<<8 | uint16(sym(overhead+n-1))
	if want := crc16(crc16(crc16Init, length), text); got != want {
		return Frame{}, fmt.Errorf("%w: %d-byte frame at sample %d fails its checksum",
			ErrCorrupt, n, start)
	}

	return Frame{Text: string(text), Start: start, End: min(end, len(d.x))}, nil
}

// symbol reads the byte whose symbol starts at sample at: the strongest tone of each band.
func (d *demod) symbol(at int) byte {
	w := d.window(at)

	var best [2]int
	var bestPower [2]float64
	for k := 0; k < len(d.coef); k += 4 {
		powers := goertzel4(w, (*[4]float64)(d.coef[k:k+4]))
		for j, power := range powers {
			band, tone := (k+j)/bandTones, (k+j)%bandTones
			if power > bestPower[band] {
				best[band], bestPower[band] = tone, power
			}
		}
	}
	return byte(best[0]<<4 | best[1])
}

// goertzel4 runs four Goertzel filters over w in one pass. Each filter is a chain of
// dependent multiply-adds; interleaving four keeps the CPU busy while each one waits,
// which makes symbol reading several times faster than one filter at a time.
func goertzel4(w []float32, coef *[4]float64) [4]float64 {
	c0, c1, c2, c3 := coef[0], coef[1], coef[2], coef[3]
	var a1, a2, b1, b2, e1, e2, f1, f2 float64
	for _, v := range w {
		x := float64(v)
		a1, a2 = x+c0*a1-a2, a1
		b1, b2 = x+c1*b1-b2, b1
		e1, e2 = x+c2*e1-e2, e1
		f1, f2 = x+c3*f1-f2, f1
	}
	return [4]float64{
		a1*a1 + a2*a2 - c0*a1*a2,
		b1*b1 + b2*b2 - c1*b1*b2,
		e1*e1 + e2*e2 - c2*e1*e2,
		f1*f1 + f2*f2 - c3*f1*f2,
	}
}

// goertzel returns the squared magnitude of the DFT of w at the frequency whose
// coefficient (2*cos(2*pi*f/rate)) is coef.
func goertzel(w []float32, coef float64) float64 {
	var s1, s2 float64
	for _, v := range w {
		s0 := float64(v) + coef*s1 - s2
		s2 = s1
		s1 = s0
	}
	return s1*s1 + s2*s2 - coef*s1*s2
}
