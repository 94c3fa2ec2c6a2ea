package api

import (
	"container/list"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/voxgate/voxgate/server/token"
)

// maxLimiterKeys bounds each limiter's table so that a flood of distinct names or
// addresses cannot grow memory without end.
const maxLimiterKeys = 10_000

// limiter is a token bucket per key (a user name, a client address, or both) on an
// injectable clock, in a table of at most maxKeys buckets.
//
// A full table evicts its least recently used bucket rather than refuse a new key:
// refusing would let anyone who fills the table lock every newcomer out. Evicting resets
// that one key's limit, but only after maxKeys other keys were used since it last was,
// and each of those requests passed its own limits first; the per-address limit makes
// that far slower than waiting for the bucket to refill.
//
// Limitation: buckets live in this process. Several replicas each allow the full rate, and
// a restart forgets every bucket; a shared limiter would need a shared store.
type limiter struct {
	limit rate.Limit
	burst int
	// idle is how long an untouched bucket takes to refill completely; after that it is
	// indistinguishable from a new one and is dropped.
	idle time.Duration
	now  func() time.Time

	mu      sync.Mutex
	buckets *lru[*rate.Limiter]
}

func newLimiter(l RateLimit, now func() time.Time, maxKeys int) *limiter {
	return &limiter{
		limit:   rate.Every(l.Every),
		burst:   l.Burst,
		idle:    l.Every * time.Duration(l.Burst),
		now:     now,
		buckets: newLRU[*rate.Limiter](maxKeys),
	}
}

// allow takes one event from key's bucket. When the bucket is empty it reports how long
// until the next event would be allowed.
func (l *limiter) allow(key string) (bool, time.Duration) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()

	l.buckets.dropOlder(now.Add(-l.idle))
	b, ok := l.buckets.get(key, now)
	if !ok {
		b = rate.NewLimiter(l.limit, l.burst)
		l.buckets.put(key, b, now)
	}

	if b.AllowN(now, 1) {
		return true, 0
	}
	res := b.ReserveN(now, 1)
	wait := res.DelayFrom(now)
	res.CancelAt(now)
	return false, wait
}

// size is how many buckets the table holds.
func (l *limiter) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buckets.len()
}

// lru is a table of at most max entries ordered by last use; putting one more evicts the
// least recently used. It is not safe for concurrent use.
type lru[V any] struct {
	max     int
	order   *list.List // of *lruEntry[V], most recent at the front
	entries map[string]*list.Element
}

type lruEntry[V any] struct {
	key  string
	val  V
	used time.Time
}

func newLRU[V any](max int) *lru[V] {
	return &lru[V]{max: max, order: list.New(), entries: map[string]*list.Element{}}
}

// get returns key's value and marks it used at now.
func (c *lru[V]) get(key string, now time.Time) (V, bool) {
	el, ok := c.entries[key]
	if !ok {
		var zero V
		return zero, false
	}
	e := el.Value.(*lruEntry[V])
	e.used = now
	c.order.MoveToFront(el)
	return e.val, true
}

// put stores key's value, used at now, evicting the least recently used entry when full.
func (c *lru[V]) put(key string, v V, now time.Time) {
	if el, ok := c.entries[key]; ok {
		e := el.Value.(*lruEntry[V])
		e.val, e.used = v, now
		c.order.MoveToFront(el)
		return
	}
	for c.order.Len() >= c.max {
		c.remove(c.order.Back())
	}
	c.entries[key] = c.order.PushFront(&lruEntry[V]{key: key, val: v, used: now})
}

// dropOlder removes the entries last used at or before t. They sit at the back, so this
// costs only what it removes.
func (c *lru[V]) dropOlder(t time.Time) {
	for el := c.order.Back(); el != nil && !el.Value.(*lruEntry[V]).used.After(t); {
		prev := el.Prev()
		c.remove(el)
		el = prev
	}
}

func (c *lru[V]) remove(el *list.Element) {
	delete(c.entries, el.Value.(*lruEntry[V]).key)
	c.order.Remove(el)
}

func (c *lru[V]) len() int { return c.order.Len() }

// addressKey is the rate-limit key of a peer address ("host:port"): the IPv4 address, or
// the /64 prefix of an IPv6 one. One IPv6 subscriber usually holds a whole /64, so keying
// on full addresses would hand each client 2^64 fresh buckets. Forwarding headers are
// ignored: any client can write them.
func addressKey(remote string) string {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip := net.ParseIP(host)
	if ip == nil {
		return host
	}
	if v4 := ip.To4(); v4 != nil {
		return v4.String()
	}
	prefix := &net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}
	return prefix.String()
}

// setRetryAfter writes a Retry-After of whole seconds, rounded up, from 1 to
// token.MaxRetryAfter: no wait of ours is longer, and none is promised to be.
func setRetryAfter(w http.ResponseWriter, d time.Duration) {
	secs := int(math.Ceil(min(d, token.MaxRetryAfter).Seconds()))
	if secs < 1 {
		secs = 1
	}
	w.Header().Set("Retry-After", strconv.Itoa(secs))
}

// maxMintsInFlight is how many of one user's mints, on both token routes together, may
// wait for upstream at once. A page needs one per grant it refreshes, and shares each
// refresh between its calls; more in flight is a burst, which would spend upstream's
// rate window (and earn 429s for whoever else mints in that second) faster than any
// per-minute bucket can notice.
const maxMintsInFlight = 2

// mintsInFlight counts each user's mints waiting for upstream. Its table holds only
// users with a mint in flight, so it is bounded by the requests being served. It is
// safe for concurrent use.
type mintsInFlight struct {
	mu    sync.Mutex
	count map[string]int
}

func newMintsInFlight() *mintsInFlight { return &mintsInFlight{count: map[string]int{}} }

// acquire takes one of user's maxMintsInFlight places, or reports false when all are
// taken. Every true must be followed by one release.
func (m *mintsInFlight) acquire(user string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count[user] >= maxMintsInFlight {
		return false
	}
	m.count[user]++
	return true
}

// release gives back a place that acquire took.
func (m *mintsInFlight) release(user string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.count[user] <= 1 {
		delete(m.count, user)
		return
	}
	m.count[user]--
}
