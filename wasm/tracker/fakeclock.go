package tracker

import (
	"sync"
	"time"
)

// FakeClock is a Clock for tests whose wall and monotonic readings move only when told,
// and independently of each other, so a test can model a sleeping laptop (wall moves,
// monotonic stands still) or a clock correction (wall jumps, monotonic unaffected).
//
// Timers follow the monotonic reading, as browser timers do. Due timers run in their own
// goroutines, like time.AfterFunc; tests wait for them with testing/synctest.
type FakeClock struct {
	mu     sync.Mutex
	wall   time.Time
	mono   time.Duration
	timers []*fakeTimer
	fired  int
}

// NewFakeClock returns a FakeClock whose wall clock reads wall and whose monotonic clock
// reads an arbitrary non-zero origin.
func NewFakeClock(wall time.Time) *FakeClock {
	return &FakeClock{wall: wall.Round(0), mono: time.Hour}
}

// Now returns the fake wall clock.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.wall
}

// Mono returns the fake monotonic clock.
func (c *FakeClock) Mono() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.mono
}

// AfterFunc arms a timer that fires when the monotonic clock has advanced by d.
func (c *FakeClock) AfterFunc(d time.Duration, f func()) Timer {
	c.mu.Lock()
	defer c.mu.Unlock()

	t := &fakeTimer{clock: c, due: c.mono + d, f: f}
	c.timers = append(c.timers, t)
	return t
}

// Advance moves both clocks forward by d, as ordinary time passing does, and fires every
// timer that became due.
func (c *FakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.wall = c.wall.Add(d)
	c.mu.Unlock()
	c.AdvanceMono(d)
}

// AdvanceWall moves only the wall clock, by d (negative moves it back). It models a
// system sleep when d > 0 and a user or NTP clock correction in either direction. No
// timer fires, because browser timers follow the monotonic clock.
func (c *FakeClock) AdvanceWall(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wall = c.wall.Add(d)
}

// AdvanceMono moves only the monotonic clock forward by d and fires every timer that
// became due. A negative d panics: monotonic time never goes back.
func (c *FakeClock) AdvanceMono(d time.Duration) {
	if d < 0 {
		panic("tracker: FakeClock.AdvanceMono with a negative duration")
	}

	c.mu.Lock()
	c.mono += d
	var due []*fakeTimer
	kept := c.timers[:0]
	for _, t := range c.timers {
		if t.due <= c.mono {
			due = append(due, t)
			continue
		}
		kept = append(kept, t)
	}
	c.timers = kept
	c.fired += len(due)
	c.mu.Unlock()

	for _, t := range due {
		go t.f()
	}
}

// Pending reports how many timers are armed and not yet fired or stopped.
func (c *FakeClock) Pending() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// Fired reports how many timers have fired since the clock was made.
func (c *FakeClock) Fired() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.fired
}

type fakeTimer struct {
	clock *FakeClock
	due   time.Duration
	f     func()
}

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()

	for i, other := range c.timers {
		if other == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}
