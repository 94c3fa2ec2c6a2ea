package tracker

import "time"

// Clock is the tracker's only source of time. It separates the two readings a browser
// offers because they fail in different ways: the wall clock (Date.now) keeps running
// while the computer sleeps but jumps when the user or NTP corrects it; the monotonic
// clock (performance.now) never jumps backwards but may stand still during system sleep.
type Clock interface {
	// Now returns the wall clock with any monotonic reading stripped, so that comparisons
	// and subtractions between two results really follow the wall clock.
	Now() time.Time

	// Mono returns the monotonic clock as a duration since an arbitrary fixed origin.
	// Only differences between two readings mean anything.
	Mono() time.Duration

	// AfterFunc calls f in its own goroutine once d has elapsed on the monotonic clock.
	AfterFunc(d time.Duration, f func()) Timer
}

// Timer is a pending AfterFunc call.
type Timer interface {
	// Stop prevents the call if it has not started yet and reports whether it did so.
	Stop() bool
}

// RealClock returns the Clock backed by package time. Under GOOS=js its wall reading
// comes from Date.now and its monotonic reading from performance.now.
func RealClock() Clock {
	return realClock{origin: time.Now()}
}

type realClock struct {
	origin time.Time // carries a monotonic reading; Mono measures from it
}

func (realClock) Now() time.Time {
	return time.Now().Round(0)
}

func (c realClock) Mono() time.Duration {
	return time.Since(c.origin)
}

func (realClock) AfterFunc(d time.Duration, f func()) Timer {
	return time.AfterFunc(d, f)
}
