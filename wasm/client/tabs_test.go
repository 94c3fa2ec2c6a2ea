//go:build js && wasm

package client

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/wasm/jsx"
	"github.com/voxgate/voxgate/wasm/tracker"
)

// jsEval runs a JavaScript expression and returns its value.
func jsEval(t *testing.T, expr string) safejs.Value {
	t.Helper()
	fn, err := safejs.Global().Get("Function")
	if err != nil {
		t.Fatal(err)
	}
	f, err := fn.New("return (" + expr + ")")
	if err != nil {
		t.Fatal(err)
	}
	v, err := f.Invoke()
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// hubJS plays voxgate.js's side of Tabs for several tabs in one page: a lock per grant
// that admits one holder at a time (granted a little later, as voxgate.js does), and
// publish delivering to every other tab's receive.
const hubJS = `{
	chains: {},
	hooks: [],
	make() {
		const hub = this;
		const hook = { receive: null, grants: 0 };
		hook.lock = (grant) => new Promise((granted) => {
			const prev = hub.chains[grant] || Promise.resolve();
			let release;
			const held = new Promise((r) => { release = r; });
			hub.chains[grant] = prev.then(() => held);
			prev.then(() => { hook.grants++; setTimeout(() => granted(() => release()), 5); });
		});
		hook.publish = (text) => {
			for (const h of hub.hooks) if (h !== hook && h.receive) h.receive(text);
		};
		hub.hooks.push(hook);
		return hook;
	},
}`

// TestTabsShareOneRefreshAcrossClients runs three clients as three tabs over the JS glue:
// calls in all of them at once cause one token request; the others adopt its token.
func TestTabsShareOneRefreshAcrossClients(t *testing.T) {
	f := installFetch(t, server(audio))
	hub := jsEval(t, hubJS)

	var clients []*Client
	for range 3 {
		hook, err := hub.Call("make")
		if err != nil {
			t.Fatal(err)
		}
		tabs := NewTabs(hook)
		recv, err := jsx.FuncOf(func(_ safejs.Value, args []safejs.Value) any {
			text, _ := args[0].String()
			tabs.Receive(text)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(recv.Release)
		if err := hook.Set("receive", recv.Value()); err != nil {
			t.Fatal(err)
		}
		c := New(Options{NoProactive: true, Coordinator: tabs, Wake: -1})
		t.Cleanup(c.Close)
		clients = append(clients, c)
	}

	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`)); err != nil {
				t.Errorf("TTSBytes: %v", err)
			}
		}()
	}
	wg.Wait()

	if n := f.count("/api/token"); n != 1 {
		t.Fatalf("token requests from 3 tabs = %d, want 1", n)
	}
	adopted := 0
	for _, c := range clients {
		st := c.Tokens().State(GrantTTS)
		if !st.Valid {
			t.Fatalf("a tab has no valid token: %+v", st)
		}
		adopted += st.Adopted
	}
	if adopted != 2 {
		t.Fatalf("tabs that adopted the token = %d, want 2", adopted)
	}
}

// hookJS is a hook whose lock is granted only when the test calls grant().
const hookJS = `{
	released: 0,
	sent: "",
	lock(grant) {
		return new Promise((r) => { this.grant = () => r(() => { this.released++; }); });
	},
	publish(text) { this.sent = text; },
}`

func TestTabsGiveBackALockGrantedAfterTheWaiterLeft(t *testing.T) {
	hook := jsEval(t, hookJS)
	tabs := NewTabs(hook)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := tabs.Lock(ctx, "stt"); err == nil {
		t.Fatal("Lock with an ended context succeeded")
	}
	if _, err := hook.Call("grant"); err != nil {
		t.Fatal(err)
	}

	deadline := time.Now().Add(2 * time.Second)
	for {
		n, _ := mustGet(t, hook, "released").Int()
		if n == 1 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the late lock was released %d times, want 1", n)
		}
		time.Sleep(time.Millisecond) // lets the event loop settle the Promise
	}
}

func TestTabsPublishesTheSharedTokenAsJSON(t *testing.T) {
	hook := jsEval(t, hookJS)
	want := tracker.Shared{Grant: "agent", ExpiresIn: 60, ExpiresAt: 1_000_060_000,
		ServerTime: 1_000_010_000, MintedAt: 1_000_000_000}

	NewTabs(hook).Publish(want)

	text, _ := mustGet(t, hook, "sent").String()
	var got tracker.Shared
	if err := json.Unmarshal([]byte(text), &got); err != nil || got != want {
		t.Fatalf("published %s (%v), want %+v", text, err, want)
	}
	for _, key := range []string{"grant", "expires_in", "expires_at", "server_time",
		"minted_at_server"} {
		var fields map[string]any
		_ = json.Unmarshal([]byte(text), &fields)
		if _, ok := fields[key]; !ok {
			t.Fatalf("published %s: no field %q", text, key)
		}
	}
}

// TestRefreshRejectedWithoutSessionIsNeverRetried follows buglog B28: a 401 from
// /api/token means signed out: one request per call, no retry, no recursion, sessionend.
func TestRefreshRejectedWithoutSessionIsNeverRetried(t *testing.T) {
	f := installFetch(t, func(r request) answer {
		if r.url == "/api/token" {
			return errorAnswer(401, "no_session")
		}
		return audio
	})
	var events []Event
	c := newClient(t, &events)
	c.sessionStarted()

	_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))

	var e *Error
	if !errors.As(err, &e) || e.Code != "no_session" || e.Status != 401 {
		t.Fatalf("error = %v, want no_session 401", err)
	}
	if f.count("/api/token") != 1 || f.count("/cartesia/tts/bytes") != 0 {
		t.Fatalf("requests: %d token, %d tts; want 1 and 0", f.count("/api/token"),
			f.count("/cartesia/tts/bytes"))
	}
	if len(events) == 0 || events[len(events)-1].Type != EventSessionEnd {
		t.Fatalf("events = %+v, want sessionend last", events)
	}
}

// TestFailingRefreshEndpointIsNotFlooded: while /api/token fails with upstream_unavailable,
// ten calls cause one request and fail fast with the same code; retryAfterMs says when the
// next attempt may go out.
func TestFailingRefreshEndpointIsNotFlooded(t *testing.T) {
	f := installFetch(t, func(r request) answer { return errorAnswer(502, "upstream_unavailable") })
	c := newClient(t, nil)

	for i := range 10 {
		_, err := c.TTSBytes(context.Background(), jsonBody(`{"transcript":"hi"}`))
		var e *Error
		if !errors.As(err, &e) || e.Code != "upstream_unavailable" || e.Grant != "tts" {
			t.Fatalf("call %d: error %v, want upstream_unavailable for tts", i, err)
		}
		if i > 0 && e.RetryAfter <= 0 {
			t.Fatalf("call %d: retry after %v, want the open backoff window", i, e.RetryAfter)
		}
	}
	if n := f.count("/api/token"); n != 1 {
		t.Fatalf("token requests for 10 calls = %d, want 1", n)
	}
}
