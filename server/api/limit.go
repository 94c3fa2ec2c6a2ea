package api

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// maxLimiterKeys bounds each limiter's table so that a flood of distinct names or
// addresses cannot grow memory without end.
const maxLimiterKeys = 10_000

// limiter is a token bucket per key (a user name or a client address) on an injectable
// clock.
//
// Limitation: buckets live in this process. Several replicas each allow the full rate, and
// a restart forgets every bucket; a shared limiter would need a shared store.
type limiter struct {
	limit rate.Limit
	burst int
	// idle is how long an untouched bucket takes to refill completely; after that it is
	// indistinguishable from a new one and may be dropped.
	idle time.Duration
	now  func() time.Time

	mu      sync.Mutex
	buckets map[string]*bucket
}

type bucket struct {
	lim  *rate.Limiter
	seen time.Time
}

func newLimiter(l RateLimit, now func() time.Time) *limiter {
	return &limiter{
		limit:   rate.Every(l.Every),
		burst:   l.Burst,
		idle:    l.Every * time.Duration(l.Burst),
		now:     now,
		buckets: map[string]*bucket{},
	}
}

// allow takes one event from key's bucket. When the bucket is empty it reports how long
// until the next event would be allowed.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()

	b, ok := l.buckets[key]
	if !ok {
		if len(l.buckets) >= maxLimiterKeys {
			l.dropIdleLocked(now)
		}
		if len(l.buckets) >= maxLimiterKeys {
			// Still full of active keys: refuse rather than forget someone's bucket,
			// which would reset their limit.
			return false, l.idle
		}
		b = &bucket{lim: rate.NewLimiter(l.limit, l.burst)}
		l.buckets[key] = b
	}
	b.seen = now

	if b.lim.AllowN(now, 1) {
		return true, 0
	}
	res := b.lim.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	res.CancelAt(now)
	return false, wait
}

func (l *limiter) dropIdleLocked(now time.Time) {
	for k, b := range l.buckets {
		if now.Sub(b.seen) >= l.idle {
			delete(l.buckets, k)
		}
	}
}

// setRetryAfter writes a Retry-After of whole seconds, rounded up, at least 1.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int(math.Ceil(d.Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
}
