package api

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// breakerRig is a breaker on a manual clock whose log lines are kept.
type breakerRig struct {
	t   *testing.T
	now time.Time
	log bytes.Buffer
	b   *breaker
}

func newBreakerRig(t *testing.T) *breakerRig {
	r := &breakerRig{t: t, now: time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)}
	r.b = newBreaker(func() time.Time { return r.now }, slog.New(slog.NewJSONHandler(&r.log, nil)))
	return r
}

// mint runs one mint through the breaker with the given upstream result and reports
// whether it was let through, and if not, the refusal.
func (r *breakerRig) mint(result error) (bool, *refusal) {
	r.t.Helper()
	tk, ref := r.b.allow()
	if ref != nil {
		return false, ref
	}
	r.b.record(tk, result)
	return true, nil
}

// events counts the upstream_quota lines with the given state.
func (r *breakerRig) events(state string) int {
	return strings.Count(r.log.String(), `"msg":"upstream_quota","state":"`+state+`"`)
}

func upstreamErr(status int, retryAfter string) error {
	return &token.UpstreamError{Status: status, Code: "quota_exceeded", RetryAfter: retryAfter,
		RequestID: "req_1"}
}

var errNoAnswer = &token.TransportError{Err: errors.New("connection refused")}

func TestBreakerOpensOnQuotaAndProbesAfterTheCoolDown(t *testing.T) {
	for _, tt := range []struct {
		name   string
		err    error
		status int
		wait   time.Duration
	}{
		{"429 with Retry-After", upstreamErr(429, "45"), 429, 45 * time.Second},
		{"429 without", upstreamErr(429, ""), 429, DefaultQuotaCoolDown},
		{"402", upstreamErr(402, ""), 503, DefaultQuotaCoolDown},
		{"402 with Retry-After", upstreamErr(402, "120"), 503, 120 * time.Second},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := newBreakerRig(t)
			if ok, _ := r.mint(tt.err); !ok {
				t.Fatal("the first mint was refused")
			}
			if r.events("open") != 1 {
				t.Fatalf("log %s, want one open event", r.log.String())
			}

			r.now = r.now.Add(tt.wait - time.Second)
			ok, ref := r.mint(nil)
			if ok || ref.status != tt.status || ref.wait != time.Second {
				t.Fatalf("one second before the end: let through %v, refusal %+v; want "+
					"%d with 1 s", ok, ref, tt.status)
			}

			r.now = r.now.Add(time.Second)
			if ok, ref := r.mint(nil); !ok {
				t.Fatalf("the probe after the cool-down was refused: %+v", ref)
			}
			if r.events("closed") != 1 {
				t.Errorf("log %s, want one closed event", r.log.String())
			}
			if ok, _ := r.mint(nil); !ok {
				t.Error("a closed circuit refused a mint")
			}
		})
	}
}

func TestBreakerLetsOneProbeAtATime(t *testing.T) {
	r := newBreakerRig(t)
	r.mint(upstreamErr(429, "10"))
	r.now = r.now.Add(10 * time.Second)

	probe, ref := r.b.allow()
	if ref != nil || !probe.probe {
		t.Fatalf("after the cool-down: ticket %+v refusal %+v, want a probe", probe, ref)
	}
	for range 3 {
		if _, ref := r.b.allow(); ref == nil || ref.wait != probeWait || ref.status != 429 {
			t.Fatalf("while the probe is in flight: refusal %+v, want 429 with %v", ref,
				probeWait)
		}
	}

	// A probe that got no answer learns nothing: the next mint probes again.
	r.b.record(probe, errNoAnswer)
	if r.events("closed") != 0 || r.events("open") != 1 {
		t.Fatalf("a probe without an answer changed the state: %s", r.log.String())
	}
	probe, ref = r.b.allow()
	if ref != nil || !probe.probe {
		t.Fatalf("after an unanswered probe: ticket %+v refusal %+v, want a new probe", probe,
			ref)
	}

	// A probe refused again opens a fresh cool-down, logged as a new opening.
	r.b.record(probe, upstreamErr(402, "20"))
	if r.events("open") != 2 {
		t.Errorf("log %s, want a second open event", r.log.String())
	}
	if ok, ref := r.mint(nil); ok || ref.status != 503 || ref.wait != 20*time.Second {
		t.Errorf("after a failed probe: let through %v, refusal %+v, want 503 for 20 s", ok, ref)
	}
}

func TestBreakerOpensAfterServerErrorsInARow(t *testing.T) {
	r := newBreakerRig(t)
	for range serverErrorsToOpen - 1 {
		r.mint(upstreamErr(500, ""))
	}
	r.mint(nil) // a success in between starts the count again
	r.mint(errNoAnswer)
	for i := range serverErrorsToOpen - 1 {
		if ok, _ := r.mint(upstreamErr(503, "")); !ok {
			t.Fatalf("5xx %d of a new run was refused", i+1)
		}
	}
	r.mint(errNoAnswer) // no answer: neither counted nor a reset
	if r.events("open") != 0 {
		t.Fatalf("opened before %d 5xx in a row: %s", serverErrorsToOpen, r.log.String())
	}

	r.mint(upstreamErr(502, "7"))
	if ok, ref := r.mint(nil); ok || ref.status != 503 || ref.wait != 7*time.Second {
		t.Errorf("after %d 5xx in a row: let through %v, refusal %+v, want 503 for 7 s",
			serverErrorsToOpen, ok, ref)
	}
}

func TestBreakerIgnoresOtherAnswersAndLateResults(t *testing.T) {
	r := newBreakerRig(t)
	for _, err := range []error{upstreamErr(401, ""), upstreamErr(400, ""), errNoAnswer,
		context.Canceled, fmt.Errorf("token: mint: parse response: %w", errors.New("x"))} {
		if ok, _ := r.mint(err); !ok {
			t.Fatalf("refused after %v", err)
		}
	}
	if r.events("open") != 0 {
		t.Fatalf("opened on an answer that is no quota signal: %s", r.log.String())
	}

	// Two mints in flight when the first 429 arrives: the second's result changes nothing.
	first, _ := r.b.allow()
	late, _ := r.b.allow()
	r.b.record(first, upstreamErr(429, "30"))
	r.b.record(late, upstreamErr(429, "300"))
	if _, ref := r.b.allow(); ref == nil || ref.wait != 30*time.Second {
		t.Errorf("refusal %+v, want the first 429's 30 s", ref)
	}
	r.now = r.now.Add(30 * time.Second)
	probe, _ := r.b.allow()
	r.b.record(late, nil) // a success from before the opening does not close it
	if _, ref := r.b.allow(); ref == nil || ref.wait != probeWait {
		t.Errorf("a stale success ended the probe: refusal %+v", ref)
	}
	r.b.record(probe, nil)
	if r.events("open") != 1 || r.events("closed") != 1 {
		t.Errorf("log %s, want one open and one closed event", r.log.String())
	}
}

func TestCoolDownFromRetryAfter(t *testing.T) {
	now := time.Date(2026, 5, 4, 9, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		retryAfter string
		want       time.Duration
	}{
		{"", DefaultQuotaCoolDown},
		{"0", time.Second},
		{"1", time.Second},
		{"90", 90 * time.Second},
		{"300", MaxQuotaCoolDown},
		{"301", MaxQuotaCoolDown},
		{"999999999", MaxQuotaCoolDown},
		{now.Add(2 * time.Minute).Format(http.TimeFormat), 2 * time.Minute},
		{now.Add(-time.Hour).Format(http.TimeFormat), time.Second},
		{now.Add(24 * time.Hour).Format(http.TimeFormat), MaxQuotaCoolDown},
		{"soon", DefaultQuotaCoolDown},
	} {
		if got := coolDownFor(tt.retryAfter, now, DefaultQuotaCoolDown); got != tt.want {
			t.Errorf("coolDownFor(%q) = %v, want %v", tt.retryAfter, got, tt.want)
		}
	}
}
