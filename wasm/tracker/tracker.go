// Package tracker knows when each grant's access token runs out and refreshes it in time.
//
// It owns expiry arithmetic, the refresh margin, single-flight refreshes, proactive refresh
// timers with backoff, and the events that report all of this. In proxy mode it never sees a
// token (the server keeps tokens in httpOnly cookies; the tracker only learns their
// lifetime); in direct mode it holds the token in memory (Token.Secret), hands it out only
// through EnsureSecret and never reports, shares or logs it. It never
// does HTTP (the refresh is an injected function) and never touches JavaScript, so it builds
// and tests natively as well as under GOOS=js.
//
// # Why expiry is measured as elapsed time
//
// The server answers a refresh with the token's lifetime (expires_in), its expiry on the
// server's clock (expires_at) and the server's clock (server_time). Comparing the client's
// absolute clock with expires_at would make every client whose clock is off by more than
// the margin either use expired tokens (clock slow) or refresh forever (clock fast). The
// tracker instead remembers, at the moment it started the refresh, one wall reading and
// one monotonic reading, and computes
//
//	remaining = expires_in - max(wall elapsed, monotonic elapsed)
//
// Starting the stopwatch before the request makes the estimate err on the safe side by
// one round trip. Taking the larger of the two elapsed times is pessimistic on purpose:
// the wall clock keeps running while the computer sleeps, when performance.now (and with
// it Go's monotonic clock) may stand still; the monotonic clock keeps running when the
// user sets the wall clock back. Whichever clock missed time, the other one saw it. A wall
// clock set forward makes tokens look older than they are, which costs one early refresh.
//
// server_time is used only to compute the clock offset that State reports (diagnostics)
// and to hand a token's remaining lifetime to other tabs, never to compare with the local
// clock.
//
// # Tabs, triggers and failures
//
// Every tab of an origin shares the token cookies, so one tab's refresh serves all: a
// Coordinator serialises refreshes across tabs (a lock per grant) and carries each new
// token's metadata to the other tabs, which adopt it as their own (Shared). After taking
// the lock a tab first looks whether a sibling refreshed meanwhile and then skips its own
// request.
//
// Timers are not trusted alone: Check re-examines every grant when the page says timers may
// have been late (visibility, focus, network back, page restored), and the wake detector
// (Options.Wake) calls it when its own ticks arrive far too late (sleep, throttling). Only
// grants used within the last token lifetime are refreshed ahead of time; idle grants are
// refreshed when a call needs them.
//
// A failed refresh whose cause may heal opens a backoff window (exponential, with jitter
// and a cap, at least the server's Retry-After up to MaxRetryAfter) shared by every caller
// of the grant: while
// it is open, Ensure answers at once with the last error instead of asking again, so N calls
// never cause N requests.
package tracker

import (
	"context"
	"errors"
	"math/rand/v2"
	"slices"
	"sort"
	"sync"
	"time"
)

// Default policy values. Each one says why it has the value it has.
const (
	// DefaultMarginCap bounds the default margin: a call checked as valid must still be
	// valid when the server forwards it and when Cartesia checks it. 30 s absorbs the
	// latency of proxy plus upstream and a clock difference between our server and
	// Cartesia of several seconds, with room to spare.
	DefaultMarginCap = 30 * time.Second

	// DefaultMarginDivisor keeps the default margin to a fifth of the lifetime, so short
	// tokens (the server allows 2 s) still spend most of their life in use.
	DefaultMarginDivisor = 5

	// DefaultRefreshTimeout bounds one refresh: a hung request must not hold the shared
	// refresh (and every caller waiting on it) forever.
	DefaultRefreshTimeout = 30 * time.Second

	// DefaultBackoffInitial is the first wait after a failed proactive refresh.
	DefaultBackoffInitial = time.Second

	// DefaultBackoffMax caps the wait between proactive retries, so a recovered server is
	// noticed within a minute while a failing one sees at most one request a minute.
	DefaultBackoffMax = time.Minute

	// MaxRetryAfter caps how long a server's Retry-After can hold a grant's refreshes
	// back: our server never asks for more (it caps upstream's at the same 5 min), so a
	// longer one comes from something broken or hostile in between, and must not park
	// the page for hours.
	MaxRetryAfter = 5 * time.Minute

	// wakeFactor says how late a wake-detector tick must be to count as a wake: hidden tabs
	// align timers to whole seconds, so a tick up to one interval late is ordinary; three
	// intervals means the page slept, was frozen or heavily throttled.
	wakeFactor = 3

	// minTimerDelay is the shortest proactive-timer delay. A token that arrives already
	// inside its margin (a very slow round trip) would otherwise re-arm a zero-delay timer
	// and refresh in a tight loop.
	minTimerDelay = time.Second
)

// Event types delivered to Options.OnEvent.
const (
	// EventRefresh: a new token arrived. Reason says what triggered the refresh.
	EventRefresh = "refresh"

	// EventRefreshError: a refresh failed. Err is a *RefreshError.
	EventRefreshError = "refresherror"

	// EventExpiring: a token reached expiry minus margin and had not been replaced. Every
	// token arms its own warning, so a replaced token warns again (buglog B01).
	EventExpiring = "expiring"

	// EventExpired: a token reached its expiry and had not been replaced.
	EventExpired = "expired"
)

// Refresh reasons carried by EventRefresh and EventRefreshError.
const (
	// ReasonMissing: a call needed the grant and no token was known.
	ReasonMissing = "missing"

	// ReasonExpiring: a call needed the grant and its token was inside the margin or
	// already expired.
	ReasonExpiring = "expiring"

	// ReasonProactive: the token's own timer fired at expiry minus margin, or a failed
	// proactive refresh was retried after backoff.
	ReasonProactive = "proactive"

	// ReasonRetry: the server rejected the token (Invalidate) and a call is retried.
	ReasonRetry = "retry"

	// ReasonManual: Refresh was called explicitly.
	ReasonManual = "manual"

	// ReasonShared: another tab minted the token and this tab adopted it (EventRefresh only).
	ReasonShared = "shared"
)

// Token is what the server says about a token it has just minted: the answer of
// POST /api/token, where the token itself stays in an httpOnly cookie, or of
// POST /api/token/direct, where it is Secret.
type Token struct {
	// Grant is the grant the token carries.
	Grant string `json:"grant"`

	// ExpiresIn is the token lifetime in seconds.
	ExpiresIn float64 `json:"expires_in"`

	// ExpiresAt is the expiry in Unix milliseconds on the server's clock.
	ExpiresAt int64 `json:"expires_at"`

	// ServerTime is the server's clock when it answered, in Unix milliseconds.
	ServerTime int64 `json:"server_time"`

	// Secret is the token itself in direct mode, empty in proxy mode. It is never encoded
	// (json "-"): the caller decodes it from the server's answer on purpose.
	Secret string `json:"-"`
}

// String describes the token without its secret, so that printing a Token is safe.
func (k Token) String() string {
	s := "tracker.Token{grant " + k.Grant + "}"
	if k.Secret != "" {
		s = "tracker.Token{grant " + k.Grant + ", secret [REDACTED]}"
	}
	return s
}

// GoString is String, for %#v.
func (k Token) GoString() string { return k.String() }

// Shared is a new token's metadata as one tab hands it to the others. The receiving tab
// takes ExpiresAt - ServerTime as the remaining lifetime at receipt: ServerTime is the
// sender's estimate of the server's clock when it sent, so no client clock is compared with
// the server's.
type Shared struct {
	// Grant is the token's grant.
	Grant string `json:"grant"`

	// ExpiresIn is the token's full lifetime in seconds.
	ExpiresIn float64 `json:"expires_in"`

	// ExpiresAt is the expiry in Unix milliseconds on the server's clock.
	ExpiresAt int64 `json:"expires_at"`

	// ServerTime is the server's clock when the message was sent, as the sender estimates
	// it (expires_at minus the sender's remaining lifetime), in Unix milliseconds.
	ServerTime int64 `json:"server_time"`

	// MintedAt is the server's clock when it minted the token (its server_time answer).
	// A tab adopts only tokens minted after its own: the cookie holds the newest one.
	MintedAt int64 `json:"minted_at_server"`
}

// Coordinator shares refreshes between the tabs of one origin. Its methods must not call
// back into the tracker synchronously, except the Subscribe callback.
type Coordinator interface {
	// Lock waits until this tab holds grant's refresh lock (or ctx ends) and returns the
	// function that releases it. A lock whose holder goes away must be released for it.
	Lock(ctx context.Context, grant string) (release func(), err error)

	// Publish hands a token this tab minted to the other tabs; it must not block.
	Publish(Shared)

	// Subscribe calls fn with every token another tab published until stop is called.
	Subscribe(fn func(Shared)) (stop func())
}

// RefreshFunc asks the server for a new token for grant. Errors should be *RefreshError so
// that their code, status and retry-after reach the caller and steer the backoff.
type RefreshFunc func(ctx context.Context, grant string) (Token, error)

// Event reports something that happened to one grant's token.
type Event struct {
	// Type is one of the Event constants.
	Type string

	// Grant is the grant concerned.
	Grant string

	// Reason is the refresh reason for EventRefresh and EventRefreshError, else empty.
	Reason string

	// State is the grant's state right after the event.
	State State

	// Err is set for EventRefreshError.
	Err *RefreshError
}

// State is a snapshot of one grant's token as the tracker sees it.
type State struct {
	// Grant is the grant.
	Grant string

	// Valid reports whether a token is known and has not expired.
	Valid bool

	// ExpiresAt estimates the expiry on the local wall clock (now + Remaining).
	ExpiresAt time.Time

	// ServerExpiresAt is the expiry the server reported, on the server's clock.
	ServerExpiresAt time.Time

	// Remaining is the token's remaining lifetime, 0 when expired or unknown.
	Remaining time.Duration

	// Lifetime is the token's full lifetime as minted.
	Lifetime time.Duration

	// Margin is how long before expiry the token counts as expiring.
	Margin time.Duration

	// Refreshes counts successful refreshes of this grant.
	Refreshes int

	// Refreshing reports whether a refresh is in flight.
	Refreshing bool

	// LastRefreshAt is when the last successful refresh completed (local wall clock).
	LastRefreshAt time.Time

	// ClockOffset is the server's clock minus the local wall clock, estimated at the last
	// refresh. It is for diagnostics only; expiry never depends on it.
	ClockOffset time.Duration

	// LastError is the last refresh failure, nil after a successful refresh.
	LastError *RefreshError

	// Adopted counts tokens of this grant taken over from other tabs.
	Adopted int

	// Backoff is how long the backoff window after a failed refresh stays open; 0 when
	// it is closed. While it is open, calls without a live token fail at once.
	Backoff time.Duration

	// Direct reports whether the current token is held in memory (direct mode) rather
	// than in the server's cookie.
	Direct bool
}

// Backoff configures retries of a failed proactive refresh.
type Backoff struct {
	// Initial is the first wait; it doubles on each further failure.
	Initial time.Duration

	// Max caps the wait (before jitter). A server's retry-after still wins.
	Max time.Duration
}

// Options configures a Tracker.
type Options struct {
	// Refresh mints a token for a grant. Required.
	Refresh RefreshFunc

	// Clock is the source of time; nil means RealClock().
	Clock Clock

	// Margin is how long before expiry a token is refreshed. Zero means the default,
	// min(DefaultMarginCap, lifetime/DefaultMarginDivisor). A margin that is not shorter
	// than a token's lifetime is reported as ErrMarginTooLarge.
	Margin time.Duration

	// RefreshTimeout bounds one refresh; zero means DefaultRefreshTimeout.
	RefreshTimeout time.Duration

	// Backoff configures proactive retries; zero fields take the defaults.
	Backoff Backoff

	// NoProactive disables refreshing ahead of time (timers, Check, backoff retries);
	// tokens are then refreshed only when a call needs them. Expiring and expired events
	// fire either way. With it off, only grants used within the last token lifetime are
	// refreshed ahead of time.
	NoProactive bool

	// Coordinator shares refreshes with other tabs; nil means this tab works alone.
	Coordinator Coordinator

	// Local reports the grants the Coordinator must not be used for: their tokens are
	// direct-mode secrets, which never leave this tab, so each tab mints its own. Nil
	// means none.
	Local func(grant string) bool

	// Wake is the wake detector's tick: a tick that arrives more than three ticks after
	// the previous one (the page slept or was frozen) runs Check. Zero disables it.
	Wake time.Duration

	// Grants lists the grants States reports even before their first use. Nil means
	// "tts", "stt" and "agent".
	Grants []string

	// OnEvent receives every Event. It is called without any tracker lock held, from the
	// goroutine that caused the event, so it may call back into the tracker; it should
	// return quickly.
	OnEvent func(Event)

	// Jitter returns a random number in [0, 1) to spread retries; nil means math/rand/v2.
	Jitter func() float64
}

// Tracker keeps per-grant token expiry and refreshes tokens before they run out. It is safe
// for concurrent use.
type Tracker struct {
	opts   Options
	clock  Clock
	base   context.Context
	cancel context.CancelFunc
	unsub  func()

	mu     sync.Mutex
	grants map[string]*entry
	closed bool
	wake   Timer
}

// entry is one grant's bookkeeping. Timer callbacks and flights hold a pointer to the entry
// they were made for and do nothing once it is no longer the grant's current entry (Reset)
// or once its token has been replaced.
type entry struct {
	grant         string
	tok           *token
	flight        *flight
	due, expiry   Timer // the current token's expiring/proactive and expired timers
	retry         Timer // backoff retry after a failed refresh
	failures      int   // consecutive failures, for the backoff
	refreshes     int
	adopted       int
	gen           int   // bumped whenever a token is installed (minted or adopted)
	mintedAt      int64 // the server's mint time of the newest token known, kept on Invalidate
	lastRefreshAt time.Time
	lastErr       *RefreshError
	invalidated   bool // the server rejected the last token; the next refresh is a retry

	used     bool // a call needed the grant (see recentLocked)
	usedWall time.Time
	usedMono time.Duration
	failWall time.Time // when the backoff window opened
	failMono time.Duration
	wait     time.Duration // the backoff window's length, 0 when closed
}

// token is what the tracker knows about one minted token.
type token struct {
	lifetime        time.Duration
	margin          time.Duration
	marginErr       *RefreshError
	wallStart       time.Time // wall reading when the refresh started
	monoStart       time.Duration
	serverExpiresAt time.Time
	offset          time.Duration
	mintedAt        int64 // server clock, Unix ms
	warned, gone    bool  // the expiring and expired events were delivered
	secret          string
}

// flight is one refresh in progress, shared by every caller that needs it.
type flight struct {
	grant  string
	reason string
	gen    int // the entry's gen when the flight started
	done   chan struct{}
	state  State         // set before done closes
	err    *RefreshError // set before done closes
}

// New returns a Tracker. It panics when opts.Refresh is nil, a programming error.
func New(opts Options) *Tracker {
	if opts.Refresh == nil {
		panic("tracker: Options.Refresh is nil")
	}
	if opts.Clock == nil {
		opts.Clock = RealClock()
	}
	if opts.RefreshTimeout <= 0 {
		opts.RefreshTimeout = DefaultRefreshTimeout
	}
	if opts.Backoff.Initial <= 0 {
		opts.Backoff.Initial = DefaultBackoffInitial
	}
	if opts.Backoff.Max <= 0 {
		opts.Backoff.Max = DefaultBackoffMax
	}
	if opts.Grants == nil {
		opts.Grants = []string{"tts", "stt", "agent"}
	}
	if opts.Jitter == nil {
		opts.Jitter = rand.Float64
	}

	base, cancel := context.WithCancel(context.Background())
	t := &Tracker{
		opts:   opts,
		clock:  opts.Clock,
		base:   base,
		cancel: cancel,
		grants: make(map[string]*entry),
	}
	if opts.Coordinator != nil {
		t.unsub = opts.Coordinator.Subscribe(t.adopt)
	}
	if opts.Wake > 0 {
		t.mu.Lock()
		t.armWakeLocked(t.clock.Now(), t.clock.Mono())
		t.mu.Unlock()
	}
	return t
}

// Ensure returns at once when grant's token is valid beyond the margin; otherwise it
// refreshes first (sharing a refresh already in flight) and returns the new state. Call it
// before every use of the grant.
//
// When ctx ends first Ensure returns ctx's error, but the shared refresh goes on for the
// other callers. When a refresh fails temporarily while the old token is still valid, the
// old token is returned without error (the failure is reported as an event). While a
// backoff window is open, a grant without a live token fails at once with a copy of the
// last error whose RetryAfter is the time the window stays open (and whose Err is nil).
func (t *Tracker) Ensure(ctx context.Context, grant string) (State, error) {
	st, _, err := t.EnsureSecret(ctx, grant)
	return st, err
}

// EnsureSecret is Ensure that also returns the token itself when it is held in memory
// (direct mode), "" when the server holds it. The secret is read under the same lock as
// the state, so it is the token the state describes. The caller must use it for one call
// and let it go: a later call asks again, so no code path reuses a token captured earlier.
func (t *Tracker) EnsureSecret(ctx context.Context, grant string) (State, string, error) {
	if grant == "" {
		return State{}, "", errors.New("tracker: ensure: empty grant")
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return State{}, "", ErrClosed
	}

	e := t.entryLocked(grant)
	now, mono := t.clock.Now(), t.clock.Mono()
	e.used, e.usedWall, e.usedMono = true, now, mono
	reason := ReasonMissing
	if k := e.tok; k != nil {
		rem := k.remaining(now, mono)
		if rem > k.margin {
			st := t.stateLocked(e, now, mono)
			t.mu.Unlock()
			return st, k.secret, nil
		}

		// A margin too large for this lifetime must not turn every call into a refresh:
		// report it while the token still lives and refresh only once it has expired.
		if k.marginErr != nil && rem > 0 {
			st := t.stateLocked(e, now, mono)
			t.mu.Unlock()
			return st, "", k.marginErr
		}
		reason = ReasonExpiring
	}
	if e.invalidated {
		reason = ReasonRetry
	}

	// Inside a backoff window nobody asks the server again: a live token is still used,
	// without one the call fails at once.
	if wait := t.blockedLocked(e, now, mono); wait > 0 && e.flight == nil && e.lastErr != nil {
		st := t.stateLocked(e, now, mono)
		secret := ""
		if e.tok != nil {
			secret = e.tok.secret
		}
		t.mu.Unlock()
		if st.Valid {
			return st, secret, nil
		}
		err := *e.lastErr
		err.RetryAfter = wait
		err.Err = nil // the first caller got the details; this one gets when to try again
		return st, "", &err
	}

	f := t.startLocked(e, reason)
	t.mu.Unlock()

	st, err := t.wait(ctx, f)
	if err != nil && !(err.Temporary() && st.Valid) {
		return st, "", err
	}
	return st, t.secretOf(grant), nil
}

// secretOf is grant's current secret: "" for a cookie token, and also when the token was
// invalidated or reset since the state was taken (this tab then no longer holds it).
func (t *Tracker) secretOf(grant string) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if e, ok := t.grants[grant]; ok && e.tok != nil {
		return e.tok.secret
	}
	return ""
}

// Refresh refreshes grant's token now, whatever its state, and returns the new state. A
// refresh already in flight is joined instead of starting another. An explicit refresh
// ignores the backoff window (a person pressed "retry") and counts as a use of the grant.
func (t *Tracker) Refresh(ctx context.Context, grant string) (State, error) {
	if grant == "" {
		return State{}, errors.New("tracker: refresh: empty grant")
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return State{}, ErrClosed
	}
	e := t.entryLocked(grant)
	e.used, e.usedWall, e.usedMono = true, t.clock.Now(), t.clock.Mono()
	f := t.startLocked(e, ReasonManual)
	t.mu.Unlock()

	st, err := t.wait(ctx, f)
	if err != nil {
		return st, err
	}
	return st, nil
}

// Invalidate forgets grant's token because the server rejected it (401 token_expired or
// no_token), so that the next Ensure refreshes. Its timers are cancelled; a refresh
// already in flight is kept, since its token is newer than the rejected one.
func (t *Tracker) Invalidate(grant string) {
	t.mu.Lock()
	defer t.mu.Unlock()

	e, ok := t.grants[grant]
	if !ok {
		return
	}
	e.stopTimers()
	e.tok = nil
	e.invalidated = true
}

// Reset forgets every grant (after logout or when the session ended): tokens, counters,
// errors and timers. Refreshes in flight finish for their callers but are not recorded.
func (t *Tracker) Reset() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.resetLocked()
}

// Close stops every timer and makes later Ensure and Refresh calls fail with ErrClosed.
// Refreshes in flight are cancelled.
func (t *Tracker) Close() {
	t.mu.Lock()
	t.closed = true
	t.resetLocked()
	if t.wake != nil {
		t.wake.Stop()
	}
	t.mu.Unlock()
	t.cancel()
	if t.unsub != nil {
		t.unsub()
	}
}

// Check re-examines every grant now, for when timers may have run late: the page became
// visible, got focus, came back online or was restored, or the computer woke up. A token
// inside its margin gets its expiring event (and an expired one its expired event) if its
// timer has not delivered it yet, and is refreshed when its grant was used within the last
// lifetime, proactive refresh is on, no backoff window is open and the last failure, if
// any, may heal.
func (t *Tracker) Check() {
	t.mu.Lock()
	var entries []*entry
	for _, e := range t.grants {
		entries = append(entries, e)
	}
	t.mu.Unlock()

	for _, e := range entries {
		t.poke(e, nil)
	}
}

// State returns grant's current state.
func (t *Tracker) State(grant string) State {
	t.mu.Lock()
	defer t.mu.Unlock()

	now, mono := t.clock.Now(), t.clock.Mono()
	e, ok := t.grants[grant]
	if !ok {
		return t.stateLocked(&entry{grant: grant}, now, mono)
	}
	return t.stateLocked(e, now, mono)
}

// States returns the state of every configured grant and of any other grant used so far,
// configured grants first.
func (t *Tracker) States() []State {
	t.mu.Lock()
	names := slices.Clone(t.opts.Grants)
	var extra []string
	for name := range t.grants {
		if !slices.Contains(names, name) {
			extra = append(extra, name)
		}
	}
	t.mu.Unlock()

	sort.Strings(extra)
	names = append(names, extra...)
	states := make([]State, 0, len(names))
	for _, name := range names {
		states = append(states, t.State(name))
	}
	return states
}

// MarginFor returns the margin the tracker applies to a token of the given lifetime, and
// an error matching ErrMarginTooLarge when the configured margin cannot work with it.
func (t *Tracker) MarginFor(lifetime time.Duration) (time.Duration, error) {
	if t.opts.Margin > 0 {
		if t.opts.Margin >= lifetime {
			return t.opts.Margin, ErrMarginTooLarge
		}
		return t.opts.Margin, nil
	}
	return min(DefaultMarginCap, lifetime/DefaultMarginDivisor), nil
}

func (t *Tracker) entryLocked(grant string) *entry {
	e, ok := t.grants[grant]
	if !ok {
		e = &entry{grant: grant}
		t.grants[grant] = e
	}
	return e
}

func (t *Tracker) resetLocked() {
	for _, e := range t.grants {
		e.stopTimers()
		if e.retry != nil {
			e.retry.Stop()
		}
	}
	t.grants = make(map[string]*entry)
}

// startLocked returns e's refresh in flight, starting one for reason if there is none.
func (t *Tracker) startLocked(e *entry, reason string) *flight {
	if e.flight != nil {
		return e.flight
	}

	f := &flight{grant: e.grant, reason: reason, gen: e.gen, done: make(chan struct{})}
	e.flight = f
	go t.run(e, f)
	return f
}

// wait blocks until f is done or ctx ends.
func (t *Tracker) wait(ctx context.Context, f *flight) (State, *RefreshError) {
	select {
	case <-f.done:
		return f.state, f.err
	case <-ctx.Done():
		return State{}, &RefreshError{Grant: f.grant, Code: CodeAborted,
			Message: "stopped waiting for the refresh", Err: ctx.Err()}
	}
}

// run performs one refresh on the tracker's own context, records its outcome when e is
// still current, wakes the waiters and emits events.
func (t *Tracker) run(e *entry, f *flight) {
	release := t.lock(e.grant)
	defer release() // after Publish: a sibling that takes the lock next sees the token
	if t.sharedMeanwhile(e, f) {
		return
	}

	ctx, cancel := context.WithTimeout(t.base, t.opts.RefreshTimeout)
	wallStart, monoStart := t.clock.Now(), t.clock.Mono()
	resp, err := t.opts.Refresh(ctx, e.grant)
	cancel()
	wallEnd := t.clock.Now()

	var k *token
	if err == nil {
		k, err = t.newToken(e.grant, resp, wallStart, monoStart, wallEnd)
	}

	t.mu.Lock()
	current := !t.closed && t.grants[e.grant] == e
	if e.flight == f {
		e.flight = nil
	}
	now, mono := t.clock.Now(), t.clock.Mono()

	var ev Event
	var shared *Shared
	if err != nil {
		f.err = asRefreshError(e.grant, err)
		if current {
			e.lastErr = f.err
			if f.err.Temporary() {
				t.backoffLocked(e, f.err, now, mono)
			}
		}
		f.state = t.stateLocked(e, now, mono)
		ev = Event{Type: EventRefreshError, Grant: e.grant, Reason: f.reason, State: f.state,
			Err: f.err}
	} else {
		target := e
		if !current {
			target = &entry{grant: e.grant} // report the new token without recording it
		}
		target.refreshes++
		ev = t.installLocked(target, k, f.reason, current, now, mono)
		f.state, f.err = ev.State, k.marginErr
		if current && t.shares(e.grant) && k.secret == "" {
			shared = k.share(e.grant, now, mono)
		}
	}
	t.mu.Unlock()

	// The waiters are woken last, so that when Ensure returns the other tabs have the
	// token and the events have been delivered.
	if shared != nil {
		t.opts.Coordinator.Publish(*shared)
	}
	if current {
		t.emit(ev)
	}
	close(f.done)
}

// installLocked makes k e's token (arming its timers when armed is true) and returns the
// event that reports it: refresh, or refresherror for a margin too large.
func (t *Tracker) installLocked(e *entry, k *token, reason string, armed bool, now time.Time,
	mono time.Duration) Event {
	e.install(k, now)
	if armed && k.marginErr == nil {
		t.armLocked(e, k, now, mono)
	}
	ev := Event{Type: EventRefresh, Grant: e.grant, Reason: reason, State: t.stateLocked(e, now, mono)}
	if k.marginErr != nil {
		ev.Type, ev.Err = EventRefreshError, k.marginErr
	}
	return ev
}

// lock takes grant's cross-tab refresh lock. Waiting is bounded like a refresh: the lock's
// holder gives it up when its own bounded refresh ends or its tab closes, so a longer wait
// means something is wrong, and refreshing without the lock is then the lesser evil.
func (t *Tracker) lock(grant string) (release func()) {
	if !t.shares(grant) {
		return func() {}
	}
	ctx, cancel := context.WithTimeout(t.base, t.opts.RefreshTimeout)
	defer cancel()
	release, err := t.opts.Coordinator.Lock(ctx, grant)
	if err != nil || release == nil {
		return func() {}
	}
	return release
}

// sharedMeanwhile finishes f without a request when another tab's token arrived while f
// waited for the lock and is still valid beyond the margin (buglog B22, B24).
func (t *Tracker) sharedMeanwhile(e *entry, f *flight) bool {
	t.mu.Lock()
	defer t.mu.Unlock()

	k := e.tok
	now, mono := t.clock.Now(), t.clock.Mono()
	if e.gen == f.gen || t.closed || t.grants[e.grant] != e || k == nil ||
		k.remaining(now, mono) <= k.margin {
		return false
	}
	if e.flight == f {
		e.flight = nil
	}
	f.state = t.stateLocked(e, now, mono)
	close(f.done)
	return true
}

// shares reports whether grant's refreshes go through the Coordinator.
func (t *Tracker) shares(grant string) bool {
	return t.opts.Coordinator != nil && (t.opts.Local == nil || !t.opts.Local(grant))
}

// adopt takes over a token another tab minted (the Coordinator's Subscribe callback).
func (t *Tracker) adopt(s Shared) {
	rem := time.Duration(s.ExpiresAt-s.ServerTime) * time.Millisecond
	lifetime := time.Duration(s.ExpiresIn * float64(time.Second))
	if s.Grant == "" || rem <= 0 || (t.opts.Local != nil && t.opts.Local(s.Grant)) {
		return
	}

	t.mu.Lock()
	e := t.entryLocked(s.Grant)
	now, mono := t.clock.Now(), t.clock.Mono()

	// The cookie holds the newest token, so an older one is never adopted; without mint
	// times, the one that lives longer wins.
	newer := s.MintedAt > e.mintedAt
	if e.mintedAt == 0 || s.MintedAt == 0 {
		newer = e.tok == nil || e.tok.remaining(now, mono) < rem
	}
	if t.closed || !newer {
		t.mu.Unlock()
		return
	}

	// Backdating the stopwatch by the part of the lifetime already used keeps the
	// remaining-time arithmetic (and the margin, from the full lifetime) unchanged.
	used := max(lifetime-rem, 0)
	k, err := t.newToken(s.Grant, Token{ExpiresIn: s.ExpiresIn, ExpiresAt: s.ExpiresAt,
		ServerTime: s.ServerTime}, now.Add(-used), mono-used, now.Add(-used))
	if err != nil {
		t.mu.Unlock()
		return
	}
	k.offset = time.UnixMilli(s.ServerTime).Sub(now)
	k.mintedAt = s.MintedAt
	e.adopted++
	ev := t.installLocked(e, k, ReasonShared, true, now, mono)
	t.mu.Unlock()

	t.emit(ev)
}

// newToken turns the server's answer into expiry bookkeeping.
func (t *Tracker) newToken(grant string, resp Token, wallStart time.Time, monoStart time.Duration,
	wallEnd time.Time) (*token, error) {
	if resp.Grant != "" && resp.Grant != grant {
		return nil, &RefreshError{Grant: grant, Code: CodeBadResponse,
			Message: "the server answered for grant " + resp.Grant}
	}

	lifetime := time.Duration(resp.ExpiresIn * float64(time.Second))
	if lifetime <= 0 && resp.ExpiresAt > 0 && resp.ServerTime > 0 {
		lifetime = time.Duration(resp.ExpiresAt-resp.ServerTime) * time.Millisecond
	}
	if lifetime <= 0 {
		return nil, &RefreshError{Grant: grant, Code: CodeBadResponse,
			Message: "the server answered without a positive expires_in"}
	}

	k := &token{lifetime: lifetime, wallStart: wallStart, monoStart: monoStart,
		mintedAt: resp.ServerTime, secret: resp.Secret}
	if resp.ExpiresAt > 0 {
		k.serverExpiresAt = time.UnixMilli(resp.ExpiresAt)
	}

	// The server read its clock somewhere between our request and its answer; the
	// midpoint is the best local estimate of that moment.
	if resp.ServerTime > 0 {
		mid := wallStart.Add(wallEnd.Sub(wallStart) / 2)
		k.offset = time.UnixMilli(resp.ServerTime).Sub(mid)
	}

	margin, err := t.MarginFor(lifetime)
	k.margin = margin
	if err != nil {
		k.marginErr = &RefreshError{Grant: grant, Code: CodeMarginTooLarge,
			Message: "margin " + margin.String() + " is not shorter than the token lifetime " +
				lifetime.String(), Err: ErrMarginTooLarge}
	}
	return k, nil
}

// armLocked arms the new token's timers: one at expiry minus margin (expiring event and
// proactive refresh) and one at expiry (expired event). Old timers were stopped by install.
func (t *Tracker) armLocked(e *entry, k *token, now time.Time, mono time.Duration) {
	rem := k.remaining(now, mono)
	e.due = t.clock.AfterFunc(max(rem-k.margin, minTimerDelay), func() { t.poke(e, k) })
	e.expiry = t.clock.AfterFunc(max(rem, 0), func() { t.poke(e, k) })
}

// poke runs when token k (nil: e's current token) may have reached expiry minus margin or
// expiry (its timers, or Check). It reports each once per token and refreshes ahead of time
// when the grant is in use and nothing speaks against asking the server now.
func (t *Tracker) poke(e *entry, k *token) {
	t.mu.Lock()
	if k == nil {
		k = e.tok
	}
	if t.grants[e.grant] != e || e.tok != k || k == nil {
		t.mu.Unlock()
		return
	}

	now, mono := t.clock.Now(), t.clock.Mono()
	rem := k.remaining(now, mono)
	var events []Event
	if rem <= k.margin && !k.warned {
		k.warned = true
		events = append(events, Event{Type: EventExpiring, Grant: e.grant})
	}
	if rem <= 0 && !k.gone {
		k.gone = true
		events = append(events, Event{Type: EventExpired, Grant: e.grant})
	}
	if rem <= k.margin && k.marginErr == nil && !t.opts.NoProactive &&
		t.recentLocked(e, now, mono) && t.blockedLocked(e, now, mono) == 0 &&
		(e.lastErr == nil || e.lastErr.Temporary()) {
		t.startLocked(e, ReasonProactive)
	}
	st := t.stateLocked(e, now, mono)
	t.mu.Unlock()

	for i := range events {
		events[i].State = st
	}
	t.emit(events...)
}

// armWakeLocked arms the wake detector's next tick, measured from the given readings.
func (t *Tracker) armWakeLocked(wall time.Time, mono time.Duration) {
	t.wake = t.clock.AfterFunc(t.opts.Wake, func() {
		now, mono2 := t.clock.Now(), t.clock.Mono()
		late := max(now.Sub(wall), mono2-mono) >= wakeFactor*t.opts.Wake

		t.mu.Lock()
		closed := t.closed
		if !closed {
			t.armWakeLocked(now, mono2)
		}
		t.mu.Unlock()

		if late && !closed {
			t.Check()
		}
	})
}

// recentLocked reports whether e's grant was used within its token's lifetime: only such
// grants are refreshed ahead of time, so an idle tab stops minting tokens nobody uses.
func (t *Tracker) recentLocked(e *entry, now time.Time, mono time.Duration) bool {
	k := e.tok
	return e.used && k != nil && max(now.Sub(e.usedWall), mono-e.usedMono) <= k.lifetime
}

// blockedLocked returns how long e's backoff window stays open, 0 when it is closed.
// Elapsed time is the larger of the two clocks, as for tokens.
func (t *Tracker) blockedLocked(e *entry, now time.Time, mono time.Duration) time.Duration {
	if e.wait <= 0 {
		return 0
	}
	return max(e.wait-max(now.Sub(e.failWall), mono-e.failMono), 0)
}

// backoffLocked opens a backoff window after a failure that may heal, and arms a retry
// when the grant is in use, proactive refresh is on and the token the refresh was meant to
// replace still lives. Once the token has expired, the next call after the window
// refreshes at use time; retrying from timers would only load a failing server.
func (t *Tracker) backoffLocked(e *entry, err *RefreshError, now time.Time,
	mono time.Duration) {
	e.failures++
	d := t.opts.Backoff.Initial << min(e.failures-1, 30)
	if d <= 0 || d > t.opts.Backoff.Max {
		d = t.opts.Backoff.Max
	}
	d = d/2 + time.Duration(t.opts.Jitter()*float64(d/2)) // jitter in [d/2, d)
	d = max(d, min(err.RetryAfter, MaxRetryAfter))
	e.failWall, e.failMono, e.wait = now, mono, d

	k := e.tok
	if k == nil || k.remaining(now, mono) <= 0 || t.opts.NoProactive ||
		!t.recentLocked(e, now, mono) {
		return
	}
	if e.retry != nil {
		e.retry.Stop()
	}
	e.retry = t.clock.AfterFunc(d, func() {
		t.mu.Lock()
		defer t.mu.Unlock()
		if t.grants[e.grant] != e || e.tok != k {
			return
		}
		t.startLocked(e, ReasonProactive)
	})
}

// stateLocked builds e's State at the given readings.
func (t *Tracker) stateLocked(e *entry, now time.Time, mono time.Duration) State {
	s := State{
		Grant:         e.grant,
		Refreshes:     e.refreshes,
		Refreshing:    e.flight != nil,
		LastRefreshAt: e.lastRefreshAt,
		LastError:     e.lastErr,
		Margin:        t.opts.Margin,
		Adopted:       e.adopted,
		Backoff:       t.blockedLocked(e, now, mono),
	}
	k := e.tok
	if k == nil {
		return s
	}

	rem := k.remaining(now, mono)
	s.Valid = rem > 0
	s.Remaining = max(rem, 0)
	s.ExpiresAt = now.Add(rem)
	s.ServerExpiresAt = k.serverExpiresAt
	s.Lifetime = k.lifetime
	s.Margin = k.margin
	s.ClockOffset = k.offset
	s.Direct = k.secret != ""
	return s
}

func (t *Tracker) emit(events ...Event) {
	if t.opts.OnEvent == nil {
		return
	}
	for _, ev := range events {
		t.opts.OnEvent(ev)
	}
}

// install makes k e's current token, cancelling the previous token's timers and closing
// any backoff window.
func (e *entry) install(k *token, at time.Time) {
	e.stopTimers()
	if e.retry != nil {
		e.retry.Stop()
		e.retry = nil
	}
	e.tok = k
	e.gen++
	e.mintedAt = max(e.mintedAt, k.mintedAt)
	e.lastRefreshAt = at
	e.lastErr = k.marginErr
	e.failures, e.wait = 0, 0
	e.invalidated = false
}

func (e *entry) stopTimers() {
	if e.due != nil {
		e.due.Stop()
		e.due = nil
	}
	if e.expiry != nil {
		e.expiry.Stop()
		e.expiry = nil
	}
}

// share describes k for other tabs at the given readings.
func (k *token) share(grant string, now time.Time, mono time.Duration) *Shared {
	rem := k.remaining(now, mono).Milliseconds()
	exp := rem // without the server's expiry, only the difference means anything
	if !k.serverExpiresAt.IsZero() {
		exp = k.serverExpiresAt.UnixMilli()
	}
	return &Shared{Grant: grant, ExpiresIn: k.lifetime.Seconds(), ExpiresAt: exp,
		ServerTime: exp - rem, MintedAt: k.mintedAt}
}

// remaining is the token's lifetime minus the larger of wall and monotonic time elapsed
// since the refresh started (see the package comment for why).
func (k *token) remaining(now time.Time, mono time.Duration) time.Duration {
	elapsed := max(now.Sub(k.wallStart), mono-k.monoStart)
	return k.lifetime - elapsed
}
