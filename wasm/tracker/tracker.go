// Package tracker knows when each grant's access token runs out and refreshes it in time.
//
// It owns expiry arithmetic, the refresh margin, single-flight refreshes, proactive refresh
// timers with backoff, and the events that report all of this. It never sees a token (the
// server keeps tokens in httpOnly cookies; the tracker only learns their lifetime), never
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
// server_time is used only to compute the clock offset that State reports (diagnostics,
// and later sharing expiry between tabs), never to decide whether a token is valid.
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
)

// Token is what the server says about a token it has just minted: the answer of
// POST /api/token. The token itself stays in an httpOnly cookie.
type Token struct {
	// Grant is the grant the token carries.
	Grant string `json:"grant"`

	// ExpiresIn is the token lifetime in seconds.
	ExpiresIn float64 `json:"expires_in"`

	// ExpiresAt is the expiry in Unix milliseconds on the server's clock.
	ExpiresAt int64 `json:"expires_at"`

	// ServerTime is the server's clock when it answered, in Unix milliseconds.
	ServerTime int64 `json:"server_time"`
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

	// NoProactive disables refreshing from timers; tokens are then refreshed only when a
	// call needs them. Expiring and expired events fire either way.
	//
	// Limitation: with proactive refresh on, a grant once used keeps being re-minted about
	// once per lifetime for as long as the session lasts, even in an idle tab.
	NoProactive bool

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
//
// Limitation: each page (tab) has its own Tracker and refreshes on its own; nothing shares
// expiry or serialises refreshes between tabs yet (Web Locks plus BroadcastChannel would).
// Limitation: page visibility and wake-up events do not trigger a check; a token is checked
// when a call needs it and when its (possibly throttled) timer fires.
type Tracker struct {
	opts   Options
	clock  Clock
	base   context.Context
	cancel context.CancelFunc

	mu     sync.Mutex
	grants map[string]*entry
	closed bool
}

// entry is one grant's bookkeeping. Timer callbacks and flights hold a pointer to the entry
// they were made for and do nothing once it is no longer the grant's current entry (Reset)
// or once its token has been replaced.
type entry struct {
	grant         string
	tok           *token
	flight        *flight
	due, expiry   Timer // the current token's expiring/proactive and expired timers
	retry         Timer // backoff retry after a failed proactive refresh
	failures      int   // consecutive proactive failures, for the backoff
	refreshes     int
	lastRefreshAt time.Time
	lastErr       *RefreshError
	invalidated   bool // the server rejected the last token; the next refresh is a retry
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
}

// flight is one refresh in progress, shared by every caller that needs it.
type flight struct {
	grant  string
	reason string
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
	return &Tracker{
		opts:   opts,
		clock:  opts.Clock,
		base:   base,
		cancel: cancel,
		grants: make(map[string]*entry),
	}
}

// Ensure returns at once when grant's token is valid beyond the margin; otherwise it
// refreshes first (sharing a refresh already in flight) and returns the new state. Call it
// before every use of the grant.
//
// When ctx ends first Ensure returns ctx's error, but the shared refresh goes on for the
// other callers. When a refresh fails temporarily while the old token is still valid, the
// old token is returned without error (the failure is reported as an event).
func (t *Tracker) Ensure(ctx context.Context, grant string) (State, error) {
	if grant == "" {
		return State{}, errors.New("tracker: ensure: empty grant")
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return State{}, ErrClosed
	}

	e := t.entryLocked(grant)
	now, mono := t.clock.Now(), t.clock.Mono()
	reason := ReasonMissing
	if k := e.tok; k != nil {
		rem := k.remaining(now, mono)
		if rem > k.margin {
			st := t.stateLocked(e, now, mono)
			t.mu.Unlock()
			return st, nil
		}

		// A margin too large for this lifetime must not turn every call into a refresh:
		// report it while the token still lives and refresh only once it has expired.
		if k.marginErr != nil && rem > 0 {
			st := t.stateLocked(e, now, mono)
			t.mu.Unlock()
			return st, k.marginErr
		}
		reason = ReasonExpiring
	}
	if e.invalidated {
		reason = ReasonRetry
	}

	f := t.startLocked(e, reason)
	t.mu.Unlock()

	st, err := t.wait(ctx, f)
	if err != nil && err.Temporary() && st.Valid {
		return st, nil
	}
	if err != nil {
		return st, err
	}
	return st, nil
}

// Refresh refreshes grant's token now, whatever its state, and returns the new state. A
// refresh already in flight is joined instead of starting another.
func (t *Tracker) Refresh(ctx context.Context, grant string) (State, error) {
	if grant == "" {
		return State{}, errors.New("tracker: refresh: empty grant")
	}

	t.mu.Lock()
	if t.closed {
		t.mu.Unlock()
		return State{}, ErrClosed
	}
	f := t.startLocked(t.entryLocked(grant), ReasonManual)
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
	t.mu.Unlock()
	t.cancel()
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

	f := &flight{grant: e.grant, reason: reason, done: make(chan struct{})}
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

	var events []Event
	if err != nil {
		f.err = asRefreshError(e.grant, err)
		if current {
			e.lastErr = f.err
			if f.reason == ReasonProactive {
				t.scheduleRetryLocked(e, f.err, now, mono)
			}
		}
		f.state = t.stateLocked(e, now, mono)
		events = append(events, Event{Type: EventRefreshError, Grant: e.grant, Reason: f.reason,
			State: f.state, Err: f.err})
	} else {
		target := e
		if !current {
			target = &entry{grant: e.grant} // report the new token without recording it
		}
		target.install(k, wallEnd)
		if current && k.marginErr == nil {
			t.armLocked(e, k, now, mono)
		}
		f.state = t.stateLocked(target, now, mono)
		f.err = k.marginErr
		if k.marginErr != nil {
			events = append(events, Event{Type: EventRefreshError, Grant: e.grant, Reason: f.reason,
				State: f.state, Err: k.marginErr})
		} else {
			events = append(events, Event{Type: EventRefresh, Grant: e.grant, Reason: f.reason,
				State: f.state})
		}
	}
	close(f.done)
	t.mu.Unlock()

	if current {
		t.emit(events...)
	}
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

	k := &token{lifetime: lifetime, wallStart: wallStart, monoStart: monoStart}
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
	e.due = t.clock.AfterFunc(max(rem-k.margin, minTimerDelay), func() { t.onDue(e, k) })
	e.expiry = t.clock.AfterFunc(max(rem, 0), func() { t.onExpiry(e, k) })
}

// onDue runs when token k reaches expiry minus margin.
func (t *Tracker) onDue(e *entry, k *token) {
	t.mu.Lock()
	if t.grants[e.grant] != e || e.tok != k {
		t.mu.Unlock()
		return
	}

	now, mono := t.clock.Now(), t.clock.Mono()
	ev := Event{Type: EventExpiring, Grant: e.grant, State: t.stateLocked(e, now, mono)}
	if !t.opts.NoProactive {
		t.startLocked(e, ReasonProactive)
	}
	t.mu.Unlock()

	t.emit(ev)
}

// onExpiry runs when token k reaches its expiry.
func (t *Tracker) onExpiry(e *entry, k *token) {
	t.mu.Lock()
	if t.grants[e.grant] != e || e.tok != k {
		t.mu.Unlock()
		return
	}
	ev := Event{Type: EventExpired, Grant: e.grant,
		State: t.stateLocked(e, t.clock.Now(), t.clock.Mono())}
	t.mu.Unlock()

	t.emit(ev)
}

// scheduleRetryLocked arms a backoff retry after a failed proactive refresh, as long as the
// failure may heal and the token it was meant to replace still lives. Once the token has
// expired, the next call refreshes at use time; retrying from timers would only load a
// failing server.
func (t *Tracker) scheduleRetryLocked(e *entry, err *RefreshError, now time.Time,
	mono time.Duration) {
	k := e.tok
	if k == nil || !err.Temporary() || k.remaining(now, mono) <= 0 {
		return
	}

	e.failures++
	d := t.opts.Backoff.Initial << min(e.failures-1, 30)
	if d <= 0 || d > t.opts.Backoff.Max {
		d = t.opts.Backoff.Max
	}
	d = d/2 + time.Duration(t.opts.Jitter()*float64(d/2)) // jitter in [d/2, d)
	d = max(d, err.RetryAfter)

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

// install makes k e's current token, cancelling the previous token's timers.
func (e *entry) install(k *token, at time.Time) {
	e.stopTimers()
	if e.retry != nil {
		e.retry.Stop()
		e.retry = nil
	}
	e.tok = k
	e.refreshes++
	e.lastRefreshAt = at
	e.lastErr = k.marginErr
	e.failures = 0
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

// remaining is the token's lifetime minus the larger of wall and monotonic time elapsed
// since the refresh started (see the package comment for why).
func (k *token) remaining(now time.Time, mono time.Duration) time.Duration {
	elapsed := max(now.Sub(k.wallStart), mono-k.monoStart)
	return k.lifetime - elapsed
}
