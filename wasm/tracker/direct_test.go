package tracker

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// secretServer mints direct-mode tokens: each answer for a grant other than "stt" carries
// a new secret (stt stays a cookie token, as when only some grants are direct).
type secretServer struct {
	*fakeServer
	mu sync.Mutex
	n  int
}

func (s *secretServer) refresh(ctx context.Context, grant string) (Token, error) {
	tok, err := s.fakeServer.refresh(ctx, grant)
	if err != nil || grant == "stt" {
		return tok, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.n++
	tok.Secret = fmt.Sprintf("secret-%s-%d", grant, s.n)
	return tok, nil
}

func TestEnsureSecretReturnsTheCurrentTokensSecret(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(start)
		srv := &secretServer{fakeServer: newFakeServer(clock, 60*time.Second)}
		tr := New(Options{Clock: clock, Refresh: srv.refresh, NoProactive: true})
		defer tr.Close()

		st, secret, err := tr.EnsureSecret(context.Background(), "tts")
		if err != nil || secret != "secret-tts-1" || !st.Valid || !st.Direct {
			t.Fatalf("EnsureSecret = %+v, %q, %v; want a valid direct state and secret 1", st,
				secret, err)
		}

		// A fresh token is handed out again without a request.
		if _, secret, _ = tr.EnsureSecret(context.Background(), "tts"); secret != "secret-tts-1" {
			t.Fatalf("second EnsureSecret = %q, want the same secret", secret)
		}

		// Inside the margin the next call gets a new token, never the old one.
		clock.Advance(50 * time.Second)
		if _, secret, _ = tr.EnsureSecret(context.Background(), "tts"); secret != "secret-tts-2" {
			t.Fatalf("EnsureSecret inside the margin = %q, want secret 2", secret)
		}

		// After Invalidate (the upstream refused the token) the secret is not reused.
		tr.Invalidate("tts")
		if _, secret, _ = tr.EnsureSecret(context.Background(), "tts"); secret != "secret-tts-3" {
			t.Fatalf("EnsureSecret after Invalidate = %q, want secret 3", secret)
		}

		// Reset (sign-out) forgets it.
		tr.Reset()
		if st := tr.State("tts"); st.Valid || st.Direct {
			t.Fatalf("State after Reset = %+v, want nothing known", st)
		}
	})
}

func TestProxyTokensHaveNoSecret(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFixture(t, 60*time.Second, Options{NoProactive: true})
		st, secret, err := f.tracker.EnsureSecret(context.Background(), "tts")
		if err != nil || secret != "" || st.Direct {
			t.Fatalf("EnsureSecret = %+v, %q, %v; want no secret for a cookie token", st, secret,
				err)
		}
	})
}

// TestLocalGrantsNeverReachOtherTabs: a direct-mode secret is never published to, locked
// with or adopted from other tabs; each tab mints its own.
func TestLocalGrantsNeverReachOtherTabs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		clock := NewFakeClock(start)
		srv := &secretServer{fakeServer: newFakeServer(clock, 60*time.Second)}
		h := newHub()
		local := func(grant string) bool { return grant == "tts" }

		var trackers []*Tracker
		for range 2 {
			tr := New(Options{Clock: clock, Refresh: srv.refresh, Coordinator: h.tab(),
				Local: local, NoProactive: true})
			defer tr.Close()
			trackers = append(trackers, tr)
		}

		for i, tr := range trackers {
			if _, secret, err := tr.EnsureSecret(context.Background(), "tts"); err != nil ||
				secret == "" {
				t.Fatalf("tab %d: EnsureSecret = %q, %v", i, secret, err)
			}
		}
		synctest.Wait()

		if got := srv.callCount("tts"); got != 2 {
			t.Fatalf("tts mints = %d, want one per tab for a local grant", got)
		}
		h.mu.Lock()
		sent := len(h.sent)
		locks := len(h.locks)
		h.mu.Unlock()
		if sent != 0 || locks != 0 {
			t.Fatalf("hub saw %d broadcasts and %d locks for a local grant, want none", sent,
				locks)
		}
		for i, tr := range trackers {
			if st := tr.State("tts"); st.Adopted != 0 {
				t.Fatalf("tab %d adopted a local grant's token", i)
			}
		}

		// A broadcast that claims the local grant (from a tab in proxy mode) is ignored.
		h.tab().Publish(Shared{Grant: "tts", ExpiresIn: 60, ExpiresAt: 200_000,
			ServerTime: 100_000, MintedAt: 1 << 50})
		for i, tr := range trackers {
			if _, secret, _ := tr.EnsureSecret(context.Background(), "tts"); secret == "" {
				t.Fatalf("tab %d lost its secret to a broadcast", i)
			}
		}

		// Other grants still share.
		if _, err := trackers[0].Ensure(context.Background(), "stt"); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if st := trackers[1].State("stt"); st.Adopted != 1 {
			t.Fatalf("stt adopted = %d, want 1: only local grants stay local", st.Adopted)
		}
	})
}

func TestTokenPrintsWithoutItsSecret(t *testing.T) {
	tok := Token{Grant: "tts", ExpiresIn: 60, Secret: "eyJ.secret.value"}
	for _, s := range []string{fmt.Sprint(tok), fmt.Sprintf("%v %+v %#v %s", tok, tok, tok, tok),
		fmt.Sprint(&tok)} {
		if strings.Contains(s, "secret.value") {
			t.Fatalf("printed token shows its secret: %s", s)
		}
	}
}
