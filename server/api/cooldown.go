package api

import (
	"log/slog"
	"sync"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// A 429 from POST /access-token says the API key's rate window is spent, but not who
// spent it. One user bursting mints earns one: if that opened the global breaker, any
// account could stop every user's mints, again after every cool-down. So a 429 first
// counts against the user whose mint it answered: that user alone waits out upstream's
// Retry-After, on both token routes, without reaching upstream. Only when 429s reach
// two different users within accountWideWindow does it look like the account as a
// whole, and then the global breaker opens as for a 402. The server-wide mint rate
// (Config.MintLimitTotal) keeps the server itself from bursting far past what upstream
// allows.
//
// Limitation: an attacker who holds two accounts can still open the global breaker by
// earning a 429 on each within a minute; MintLimitTotal set below upstream's own rate is
// what keeps their bursts from earning one at all.

// accountWideWindow is how close together two users' 429s must come to count as the
// account's limit rather than one user's burst: upstream rate windows are a minute or
// less, so a 429 older than that says nothing about the current one.
const accountWideWindow = time.Minute

// rateLimited is one upstream 429: the user whose mint it answered, and when.
type rateLimited struct {
	user string
	at   time.Time
}

// coolDowns holds the per-user cool-downs after upstream 429s and decides which 429s are
// account-wide. It is safe for concurrent use.
type coolDowns struct {
	now func() time.Time
	log *slog.Logger

	mu sync.Mutex
	// until maps a user to the end of their cool-down. The table is bounded like the
	// rate limiters'; a user evicted early merely reaches upstream once more.
	until *lru[time.Time]
	// last is the most recent 429, other the most recent one for any other user: the
	// two facts that decide whether the next 429 comes from a second user.
	last, other rateLimited
}

func newCoolDowns(now func() time.Time, log *slog.Logger) *coolDowns {
	return &coolDowns{now: now, log: log, until: newLRU[time.Time](maxLimiterKeys)}
}

// waiting reports whether user is cooling down, and for how long still.
func (c *coolDowns) waiting(user string) (time.Duration, bool) {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()

	c.until.dropOlder(now.Add(-MaxQuotaCoolDown))
	until, ok := c.until.get(user, now)
	if !ok || !now.Before(until) {
		return 0, false
	}
	return until.Sub(now), true
}

// accountWide takes upstream's 429 to one of user's mints. It reports true when another
// user got a 429 within accountWideWindow: the caller then opens the global breaker.
// Otherwise it cools user down for the delay upstream named (see coolDownFor) and logs
// one user_cool_down event.
func (c *coolDowns) accountWide(user string, grant token.Grant, ue *token.UpstreamError) bool {
	now := c.now()
	c.mu.Lock()
	defer c.mu.Unlock()

	recent := func(r rateLimited) bool {
		return r.user != "" && r.user != user && now.Sub(r.at) < accountWideWindow
	}
	wide := recent(c.last) || recent(c.other)
	if c.last.user != user {
		c.other = c.last
	}
	c.last = rateLimited{user: user, at: now}
	if wide {
		return true
	}

	coolDown := coolDownFor(ue.RetryAfter, now)
	c.until.put(user, now.Add(coolDown), now)
	c.log.Warn("user_cool_down", "user", user, "grant", string(grant),
		"upstream_status", ue.Status, "error_code", ue.Code, "request_id", ue.RequestID,
		"cool_down_s", int(coolDown/time.Second))
	return false
}
