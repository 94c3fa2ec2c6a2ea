package tracker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// hub plays the browser's Web Locks and BroadcastChannel for several tabs (trackers) in
// one test: one lock per grant, and every published token delivered to the other tabs.
type hub struct {
	mu     sync.Mutex
	locks  map[string]chan struct{} // a held lock is a full channel
	owners map[string]*tab
	subs   map[*tab]func(Shared)
	mute   bool // drop broadcasts, as if the channel were missing or slow
	sent   []Shared
}

func newHub() *hub {
	return &hub{locks: map[string]chan struct{}{}, owners: map[string]*tab{},
		subs: map[*tab]func(Shared){}}
}

// tab is one tab's Coordinator.
type tab struct{ h *hub }

func (h *hub) tab() *tab { return &tab{h: h} }

func (h *hub) lockOf(grant string) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	l, ok := h.locks[grant]
	if !ok {
		l = make(chan struct{}, 1)
		h.locks[grant] = l
	}
	return l
}

func (b *tab) Lock(ctx context.Context, grant string) (func(), error) {
	l := b.h.lockOf(grant)
	select {
	case l <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	b.h.mu.Lock()
	b.h.owners[grant] = b
	b.h.mu.Unlock()
	return func() { b.h.unlock(grant, b) }, nil
}

// unlock releases grant's lock if owner still holds it (a closed tab's lock was released
// already).
func (h *hub) unlock(grant string, owner *tab) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.owners[grant] != owner {
		return
	}
	delete(h.owners, grant)
	<-h.locks[grant]
}

// close plays a tab being closed: the browser releases every lock it held.
func (h *hub) close(owner *tab) {
	h.mu.Lock()
	var held []string
	for grant, o := range h.owners {
		if o == owner {
			held = append(held, grant)
		}
	}
	delete(h.subs, owner)
	h.mu.Unlock()
	for _, grant := range held {
		h.unlock(grant, owner)
	}
}

func (b *tab) Publish(s Shared) {
	b.h.mu.Lock()
	b.h.sent = append(b.h.sent, s)
	var to []func(Shared)
	for other, fn := range b.h.subs {
		if other != b && !b.h.mute {
			to = append(to, fn)
		}
	}
	b.h.mu.Unlock()
	for _, fn := range to {
		fn(s) // delivered before the lock is released, as a browser usually does
	}
}

func (b *tab) Subscribe(fn func(Shared)) func() {
	b.h.mu.Lock()
	defer b.h.mu.Unlock()
	b.h.subs[b] = fn
	return func() { b.h.close(b) }
}

// tabs is several trackers on one machine (one clock), one server and one hub.
type tabs struct {
	clock  *FakeClock
	server *fakeServer
	hub    *hub
	coords []*tab
	list   []*Tracker
	events []*recorder
}

func newTabs(t *testing.T, n int, ttl time.Duration, opts Options) *tabs {
	t.Helper()
	x := &tabs{clock: NewFakeClock(start), hub: newHub()}
	x.server = newFakeServer(x.clock, ttl)
	for range n {
		rec := &recorder{}
		coord := x.hub.tab()
		o := opts
		o.Clock, o.Refresh, o.OnEvent, o.Coordinator = x.clock, x.server.refresh, rec.add, coord
		tr := New(o)
		t.Cleanup(tr.Close)
		x.coords = append(x.coords, coord)
		x.list = append(x.list, tr)
		x.events = append(x.events, rec)
	}
	return x
}

// TestTabsRefreshingAtOnceMakeOneRequest follows buglog B21 and B24: every tab needs the
// token at the same moment; one tab refreshes, the others wait for its lock and take its
// token.
func TestTabsRefreshingAtOnceMakeOneRequest(t *testing.T) {
	for _, n := range []int{2, 3} {
		t.Run(fmt.Sprint(n, " tabs"), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x := newTabs(t, n, 300*time.Second, Options{})
				gate := x.server.hold("tts")

				states := make(chan State, n*5)
				for _, tr := range x.list {
					for range 5 {
						go func() {
							st, err := tr.Ensure(context.Background(), "tts")
							if err != nil {
								t.Errorf("Ensure: %v", err)
							}
							states <- st
						}()
					}
				}
				synctest.Wait()
				close(gate)
				defer synctest.Wait() // let the shared events arrive before they are counted

				for range n * 5 {
					if st := <-states; !st.Valid || st.Remaining != 300*time.Second {
						t.Fatalf("a caller got %+v, want the one fresh token", st)
					}
				}
				if got := x.server.callCount("tts"); got != 1 {
					t.Fatalf("token requests = %d, want 1 for %d tabs", got, n)
				}
				synctest.Wait()
				minted, adopted := 0, 0
				for i, tr := range x.list {
					st := tr.State("tts")
					minted += st.Refreshes
					adopted += st.Adopted
					if st.Adopted == 1 && x.events[i].count(EventRefresh, ReasonShared) != 1 {
						t.Fatalf("tab %d adopted without a shared refresh event", i)
					}
				}
				if minted != 1 || adopted != n-1 {
					t.Fatalf("minted %d, adopted %d; want 1 and %d", minted, adopted, n-1)
				}
			})
		})
	}
}

// TestAdoptedTokenKeepsItsRemainingLifetime checks, with the server clock ahead and
// behind, that a tab adopting a sibling's token counts down from the sibling's remaining
// lifetime and does not ask for a token of its own.
func TestAdoptedTokenKeepsItsRemainingLifetime(t *testing.T) {
	for _, skew := range []time.Duration{-10 * time.Minute, -50 * time.Second, 0,
		50 * time.Second, 10 * time.Minute} {
		t.Run(fmt.Sprint(skew), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				x := newTabs(t, 2, 300*time.Second, Options{NoProactive: true})
				x.server.set(300*time.Second, skew)
				a, b := x.list[0], x.list[1]

				if _, err := a.Ensure(context.Background(), "tts"); err != nil {
					t.Fatal(err)
				}
				x.clock.Advance(100 * time.Second)
				st, err := b.Ensure(context.Background(), "tts")

				if err != nil || st.Remaining != 200*time.Second || st.Lifetime != 300*time.Second ||
					st.Margin != 30*time.Second {
					t.Fatalf("sibling state = %+v, %v; want 200s of a 300s token, margin 30s", st, err)
				}
				if st.ClockOffset != skew || !st.ServerExpiresAt.Equal(start.Add(skew+300*time.Second)) {
					t.Fatalf("offset %v, server expiry %v; want %v and %v", st.ClockOffset,
						st.ServerExpiresAt, skew, start.Add(skew+300*time.Second))
				}
				if got := x.server.callCount("tts"); got != 1 {
					t.Fatalf("token requests = %d, want 1", got)
				}

				x.clock.Advance(171 * time.Second) // 29 s left: both tabs see it in the margin
				if _, err := b.Ensure(context.Background(), "tts"); err != nil {
					t.Fatal(err)
				}
				if st := a.State("tts"); x.server.callCount("tts") != 2 || st.Remaining != 300*time.Second {
					t.Fatalf("after b refreshed: requests %d, a's state %+v; want 2 and a fresh token",
						x.server.callCount("tts"), st)
				}
			})
		})
	}
}

func TestPublishedMetadataCarriesRemainingLifetimeAndMintTime(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTabs(t, 1, 300*time.Second, Options{})
		x.server.set(300*time.Second, 7*time.Minute)

		if _, err := x.list[0].Ensure(context.Background(), "stt"); err != nil {
			t.Fatal(err)
		}

		if len(x.hub.sent) != 1 {
			t.Fatalf("published %d messages, want 1", len(x.hub.sent))
		}
		s := x.hub.sent[0]
		minted := start.Add(7 * time.Minute).UnixMilli()
		want := Shared{Grant: "stt", ExpiresIn: 300, ExpiresAt: minted + 300_000,
			ServerTime: minted, MintedAt: minted}
		if s != want {
			t.Fatalf("published %+v, want %+v", s, want)
		}
	})
}

// TestLockWaiterWithoutBroadcastRefreshesItself follows buglog B25: when the sibling's
// token never arrives (no BroadcastChannel, or a lost message), the tab that gets the lock
// refreshes itself instead of assuming the other one succeeded.
func TestLockWaiterWithoutBroadcastRefreshesItself(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTabs(t, 2, 300*time.Second, Options{})
		x.hub.mute = true
		gate := x.server.hold("tts")

		done := make(chan State, 2)
		for _, tr := range x.list {
			go func() {
				st, _ := tr.Ensure(context.Background(), "tts")
				done <- st
			}()
		}
		synctest.Wait()
		if got := x.server.callCount("tts"); got != 1 {
			t.Fatalf("requests while the first holds the lock = %d, want 1", got)
		}
		close(gate)

		for range 2 {
			if st := <-done; !st.Valid {
				t.Fatalf("state = %+v, want valid", st)
			}
		}
		if got := x.server.callCount("tts"); got != 2 {
			t.Fatalf("requests = %d, want 2 (one per tab, one after the other)", got)
		}
	})
}

// TestClosedTabDoesNotBlockOthers: a tab closed in the middle of its refresh gives up its
// lock (the browser releases it), and the waiting tab refreshes without waiting for the
// hung request.
func TestClosedTabDoesNotBlockOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTabs(t, 2, 300*time.Second, Options{})
		gate := x.server.hold("tts")
		defer close(gate)

		go func() { _, _ = x.list[0].Ensure(context.Background(), "tts") }()
		synctest.Wait()
		waiting := make(chan State, 1)
		go func() {
			st, _ := x.list[1].Ensure(context.Background(), "tts")
			waiting <- st
		}()
		synctest.Wait()
		if got := x.server.callCount("tts"); got != 1 {
			t.Fatalf("requests before the close = %d, want 1", got)
		}

		x.hub.close(x.coords[0])
		synctest.Wait()

		if got := x.server.callCount("tts"); got != 2 {
			t.Fatalf("requests after the first tab closed = %d, want 2", got)
		}
	})
}

// TestLockHeldForeverIsWaitedForOnlyARefreshTimeout: a lock that is never released (a tab
// frozen while holding it) delays the refresh by at most RefreshTimeout.
func TestLockHeldForeverIsWaitedForOnlyARefreshTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTabs(t, 1, 300*time.Second, Options{RefreshTimeout: 5 * time.Second})
		x.hub.lockOf("tts") <- struct{}{} // held by a tab that never lets go

		began := time.Now()
		st, err := x.list[0].Ensure(context.Background(), "tts")

		if err != nil || !st.Valid {
			t.Fatalf("Ensure = %+v, %v; want a token", st, err)
		}
		if waited := time.Since(began); waited != 5*time.Second {
			t.Fatalf("waited %v for the lock, want the 5s refresh timeout", waited)
		}
	})
}

func TestOlderSiblingTokenIsNotAdopted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		x := newTabs(t, 1, 300*time.Second, Options{})
		tr := x.list[0]
		if _, err := tr.Ensure(context.Background(), "tts"); err != nil {
			t.Fatal(err)
		}
		minted := start.UnixMilli()

		tr.adopt(Shared{Grant: "tts", ExpiresIn: 600, ExpiresAt: minted + 600_000,
			ServerTime: minted - 1000, MintedAt: minted - 1000})
		if st := tr.State("tts"); st.Adopted != 0 || st.Lifetime != 300*time.Second {
			t.Fatalf("state = %+v: adopted an older token", st)
		}

		tr.adopt(Shared{Grant: "tts", ExpiresIn: 60, ExpiresAt: minted + 61_000,
			ServerTime: minted + 1000, MintedAt: minted + 1000})
		if st := tr.State("tts"); st.Adopted != 1 || st.Remaining != 60*time.Second {
			t.Fatalf("state = %+v: want the newer (shorter) token adopted, the cookie holds it", st)
		}
	})
}

// TestAdoptedTokenOfAnUnusedGrantIsNotRefreshedAhead: a tab that only heard of a grant
// from its siblings leaves the refreshing to the tabs that use it.
func TestAdoptedTokenOfAnUnusedGrantIsNotRefreshedAhead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 100*time.Second, Options{})
		now := start.UnixMilli()

		f.tracker.adopt(Shared{Grant: "tts", ExpiresIn: 100, ExpiresAt: now + 100_000,
			ServerTime: now, MintedAt: now})
		f.clock.Advance(90 * time.Second)
		synctest.Wait()

		if got := f.server.callCount("tts"); got != 0 {
			t.Fatalf("requests = %d, want 0 for a grant this tab never used", got)
		}
		if n := f.events.count(EventExpiring, ""); n != 1 {
			t.Fatalf("expiring events = %d, want 1", n)
		}
	})
}
