package emulator

import (
	"context"
	"time"

	"github.com/voxgate/voxgate/server/audio"
	"github.com/voxgate/voxgate/server/tonecode"
)

// chunkDuration is how much audio each streamed chunk carries: short enough that a
// player can start early, long enough that per-chunk overhead (a flush, later a base64
// JSON event) stays small.
const chunkDuration = 100 * time.Millisecond

// streamAudio renders sig chunk by chunk, scales it by volume, encodes it and hands each
// chunk to emit. With a pace above zero chunk i is emitted no earlier than
// i*chunkDuration*pace after the first, so pace 1 streams in real time. It stops when
// ctx ends or emit fails and returns that error.
//
// Chunks are rendered on demand, so a long transcript never sits in memory whole.
func (e *Emulator) streamAudio(ctx context.Context, sig *tonecode.Signal, enc audio.Encoding,
	volume float64, emit func([]byte) error) error {
	chunkSamples := int(int64(sig.SampleRate()) * int64(chunkDuration) / int64(time.Second))
	samples := make([]float32, chunkSamples)
	buf := make([]byte, 0, chunkSamples*enc.BytesPerSample())

	start := time.Now()
	for i, from := 0, 0; ; i, from = i+1, from+chunkSamples {
		n := sig.Render(samples, from)
		if n == 0 {
			return nil
		}

		if e.pace > 0 && i > 0 {
			due := start.Add(time.Duration(float64(i) * float64(chunkDuration) * e.pace))
			if err := sleepUntil(ctx, due); err != nil {
				return err
			}
		}
		if err := ctx.Err(); err != nil {
			return err
		}

		for j := range samples[:n] {
			samples[j] *= float32(volume)
		}
		if err := emit(audio.AppendEncoded(buf[:0], enc, samples[:n])); err != nil {
			return err
		}
	}
}

// sleepUntil waits until t or until ctx ends.
func sleepUntil(ctx context.Context, t time.Time) error {
	d := time.Until(t)
	if d <= 0 {
		return nil
	}
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
