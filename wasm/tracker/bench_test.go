package tracker

import (
	"context"
	"testing"
	"time"
)

// BenchmarkEnsureFreshToken measures the check every TTS, STT and agent call pays before it
// starts when its token is still fresh: the hot path of the client.
func BenchmarkEnsureFreshToken(b *testing.B) {
	clock := NewFakeClock(time.Unix(1_800_000_000, 0))
	tr := New(Options{
		Clock:   clock,
		Refresh: fiveMinuteTokens(clock),
	})
	defer tr.Close()
	ctx := context.Background()
	if _, err := tr.Ensure(ctx, "tts"); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	for b.Loop() {
		if _, err := tr.Ensure(ctx, "tts"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEnsureConcurrentFreshToken is the same check from many goroutines at once, as
// when a page runs several streams.
func BenchmarkEnsureConcurrentFreshToken(b *testing.B) {
	clock := NewFakeClock(time.Unix(1_800_000_000, 0))
	tr := New(Options{
		Clock:   clock,
		Refresh: fiveMinuteTokens(clock),
	})
	defer tr.Close()
	ctx := context.Background()
	if _, err := tr.Ensure(ctx, "tts"); err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := tr.Ensure(ctx, "tts"); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// fiveMinuteTokens refreshes with a 300 s token on the fake clock.
func fiveMinuteTokens(clock *FakeClock) RefreshFunc {
	return func(context.Context, string) (Token, error) {
		now := clock.Now()
		return Token{Grant: "tts", ExpiresIn: 300, ServerTime: now.UnixMilli(),
			ExpiresAt: now.Add(300 * time.Second).UnixMilli()}, nil
	}
}
