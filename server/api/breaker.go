package api

import (
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// The quota breaker stops minting for everyone while the upstream says the account is
// out of budget. Cartesia's limits belong to the API key, not to a user, so once
// POST /access-token answers 402 (out of credits), or 429 (rate or concurrency limit)
// for three users within ten seconds (see coolDowns), every further mint in the cool-down would fail the
// same way, each one still sending the key upstream for nothing and, with many users,
// hammering an upstream that asked us to wait. Both token routes are answered locally
// instead, with our own Retry-After, until the cool-down ends; then one mint probes, and
// only an answer that is no quota or server error closes the circuit.
//
// A 429 for one user alone cools down only that user (see coolDowns): the breaker sees
// a 429 only when the caller judged it account-wide, or when it answered the probe.
//
// Repeated 5xx answers open it too: a failing upstream gains nothing from a mint a
// second, and each page's backoff is its own, not the deployment's. Transport failures
// (no answer, a timeout) do not count: the upstream said nothing about its budget, and
// the mint timeout already bounds what each one costs.
//
// Limitation: the breaker lives in this process. Replicas each learn of an exhausted
// quota with their own first refused mint, and a restart forgets an open circuit.

// Quota cool-downs. An upstream Retry-After sets the cool-down when it is a sane delay;
// otherwise it is DefaultQuotaCoolDown for the breaker, DefaultUserCoolDown for one
// user.
const (
	// DefaultQuotaCoolDown is the breaker's cool-down when upstream names none: an
	// upstream that wanted a longer wait would have said so, and one probe every ten
	// seconds costs it nothing, while every user waits out each second of it.
	DefaultQuotaCoolDown = 10 * time.Second
	// DefaultUserCoolDown is one user's cool-down after a 429 without Retry-After: rate
	// windows of a second (the usual kind without a Retry-After) refill well within it.
	DefaultUserCoolDown = 5 * time.Second
	// MaxQuotaCoolDown caps what an upstream Retry-After can impose: a hostile or broken
	// value (hours, years) must not stop every mint for that long.
	MaxQuotaCoolDown = token.MaxRetryAfter
	// minQuotaCoolDown is the floor for "Retry-After: 0" or a date in the past: an
	// upstream that just refused is not asked again within the same second.
	minQuotaCoolDown = time.Second
	// serverErrorsToOpen is how many 5xx answers in a row open the circuit: one or two
	// are a blip that the client's retry covers, three in a row are an outage.
	serverErrorsToOpen = 3
	// probeWait is the Retry-After given while the probe is in flight: it ends within the
	// mint timeout, and usually within a round trip.
	probeWait = time.Second
)

// tripKind says what an upstream answer means to the breaker.
type tripKind int

const (
	// neutral: nothing learned about the upstream's budget (no answer, client gone).
	neutral tripKind = iota
	// healthy: the upstream answered something other than a quota or server error.
	healthy
	// quota: 402, or an account-wide 429 (see recordMint), which opens the circuit at
	// once.
	quota
	// serverError: 5xx, which opens it after serverErrorsToOpen in a row.
	serverError
)

// classify maps a Minter result onto a tripKind.
func classify(err error) tripKind {
	if err == nil {
		return healthy
	}
	var ue *token.UpstreamError
	if errors.As(err, &ue) {
		switch {
		case ue.Status == http.StatusTooManyRequests || ue.Status == http.StatusPaymentRequired:
			return quota
		case ue.Status >= 500:
			return serverError
		}
		return healthy
	}
	var te *token.TransportError
	if errors.As(err, &te) {
		return neutral
	}
	// A malformed answer is still an answer: the upstream is not refusing for budget.
	return healthy
}

// ticket is the breaker's leave for one mint: which generation of the circuit let it
// through, and whether it is the probe of a half-open circuit.
type ticket struct {
	gen   uint64
	probe bool
}

// refusal is the breaker's answer to a mint it did not let through.
type refusal struct {
	// status is 429 when the upstream rate limited us, else 503.
	status int
	wait   time.Duration
}

// breaker is the upstream quota circuit breaker; it is safe for concurrent use.
type breaker struct {
	now func() time.Time
	log *slog.Logger

	mu sync.Mutex
	// gen counts state changes, so that the result of a mint let through before the
	// last change cannot act on the new state.
	gen  uint64
	open bool
	// openedAt is when the circuit last went from closed to open (for the close event);
	// until ends the current cool-down; status is what refusals answer.
	openedAt time.Time
	until    time.Time
	status   int
	// probing is set while the one probe of a half-open circuit is in flight.
	probing bool
	// serverErrors counts 5xx answers in a row while closed.
	serverErrors int
}

func newBreaker(now func() time.Time, log *slog.Logger) *breaker {
	return &breaker{now: now, log: log}
}

// allow lets a mint through (closed circuit, or the one probe of a half-open circuit) or
// says how to refuse it.
func (b *breaker) allow() (ticket, *refusal) {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()

	if !b.open {
		return ticket{gen: b.gen}, nil
	}
	if now.Before(b.until) {
		return ticket{}, &refusal{status: b.status, wait: b.until.Sub(now)}
	}
	if b.probing {
		return ticket{}, &refusal{status: b.status, wait: probeWait}
	}
	b.probing = true
	return ticket{gen: b.gen, probe: true}, nil
}

// waiting is what is left of an open circuit's cool-down, zero when there is none: a
// refusal for another reason can then name the longer wait.
func (b *breaker) waiting() time.Duration {
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.open || !now.Before(b.until) {
		return 0
	}
	return b.until.Sub(now)
}

// record takes the result of a mint that allow let through.
func (b *breaker) record(t ticket, err error) {
	kind := classify(err)
	now := b.now()
	b.mu.Lock()
	defer b.mu.Unlock()

	if t.gen != b.gen {
		return // the circuit changed while this mint was in flight
	}
	if t.probe {
		b.probing = false
		switch kind {
		case quota, serverError:
			b.trip(now, err, true)
		case healthy:
			b.close(now)
		}
		return // neutral: the next mint probes again
	}

	switch kind {
	case quota:
		b.trip(now, err, false)
	case serverError:
		b.serverErrors++
		if b.serverErrors >= serverErrorsToOpen {
			b.trip(now, err, false)
		}
	case healthy:
		b.serverErrors = 0
	}
}

// abandon ends a mint that allow let through but that brought no answer at all: the
// Minter panicked. Like a transport failure it teaches nothing about the budget, but a
// probe must still end, or the half-open circuit would refuse every later mint, each
// told to retry in probeWait, until a restart.
func (b *breaker) abandon(t ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if t.probe && t.gen == b.gen {
		b.probing = false
	}
}

// trip opens the circuit (again, when a probe failed) for the cool-down err asks for,
// and logs one alert-worthy upstream_quota event. The event carries what the upstream
// said about itself, never a credential: UpstreamError fields are already redacted.
func (b *breaker) trip(now time.Time, err error, probe bool) {
	var ue *token.UpstreamError
	errors.As(err, &ue) // quota and serverError are always UpstreamErrors

	coolDown := coolDownFor(ue.RetryAfter, now, DefaultQuotaCoolDown)
	if !b.open {
		b.openedAt = now
	}
	b.gen++
	b.open, b.until, b.serverErrors = true, now.Add(coolDown), 0
	b.status = http.StatusServiceUnavailable
	if ue.Status == http.StatusTooManyRequests {
		b.status = http.StatusTooManyRequests
	}

	b.log.Warn("upstream_quota", "state", "open", "probe", probe,
		"upstream_status", ue.Status, "error_code", ue.Code, "request_id", ue.RequestID,
		"cool_down_s", int(coolDown/time.Second))
}

// close ends an open circuit after a successful probe and logs that it did.
func (b *breaker) close(now time.Time) {
	b.gen++
	b.open, b.serverErrors = false, 0
	b.log.Info("upstream_quota", "state", "closed",
		"open_s", int(now.Sub(b.openedAt).Round(time.Second)/time.Second))
}

// coolDownFor turns an upstream Retry-After (already cleaned by token.CleanRetryAfter to
// whole seconds or an HTTP date) into a cool-down from now: the delay it names, within
// minQuotaCoolDown and MaxQuotaCoolDown, or def when it names none.
func coolDownFor(retryAfter string, now time.Time, def time.Duration) time.Duration {
	if retryAfter == "" {
		return def
	}
	var d time.Duration
	if secs, err := strconv.Atoi(retryAfter); err == nil {
		// Compare in seconds first: a huge count would overflow a Duration.
		if secs > int(MaxQuotaCoolDown/time.Second) {
			return MaxQuotaCoolDown
		}
		d = time.Duration(secs) * time.Second
	} else if at, err := http.ParseTime(retryAfter); err == nil {
		d = at.Sub(now)
	} else {
		return def
	}
	return min(max(d, minQuotaCoolDown), MaxQuotaCoolDown)
}
