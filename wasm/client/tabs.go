//go:build js && wasm

package client

import (
	"context"
	"encoding/json"
	"sync"

	"github.com/hack-pad/safejs"
	"github.com/voxgate/voxgate/wasm/jsx"
	"github.com/voxgate/voxgate/wasm/tracker"
)

// Tabs is a tracker.Coordinator whose browser work is done by JavaScript, where it is much
// smaller than in wasm: voxgate.js uses Web Locks named "voxgate-refresh-<grant>" and the
// BroadcastChannel "voxgate-tokens". The JavaScript object offers
//
//	lock(grant)    a Promise of a release function, once this tab holds grant's lock
//	               (or null when the browser has no Web Locks)
//	publish(json)  posts a tracker.Shared, as JSON text, to the other tabs
//
// and hands every message from the other tabs to Receive.
type Tabs struct {
	hook safejs.Value

	mu  sync.Mutex
	sub func(tracker.Shared)
}

// NewTabs returns the coordinator over hook, the object described at Tabs.
func NewTabs(hook safejs.Value) *Tabs {
	return &Tabs{hook: hook}
}

// Lock waits for voxgate.js to hold the lock. When ctx ends first, the lock is given back
// as soon as it is granted, so no tab waits for a holder that left.
func (b *Tabs) Lock(ctx context.Context, grant string) (func(), error) {
	p, err := b.hook.Call("lock", grant)
	if err != nil {
		return nil, err
	}
	release, err := jsx.Await(ctx, p)
	if err != nil {
		go func() {
			if r, err := jsx.Await(context.Background(), p); err == nil {
				_, _ = r.Invoke()
			}
		}()
		return nil, err
	}
	return func() { _, _ = release.Invoke() }, nil
}

// Publish hands s to voxgate.js as JSON.
func (b *Tabs) Publish(s tracker.Shared) {
	if text, err := json.Marshal(s); err == nil {
		_, _ = b.hook.Call("publish", string(text))
	}
}

// Subscribe registers the tracker's callback; messages arrive through Receive.
func (b *Tabs) Subscribe(fn func(tracker.Shared)) func() {
	b.mu.Lock()
	b.sub = fn
	b.mu.Unlock()
	return func() {}
}

// Receive decodes a message from another tab (JSON text) and hands it to the tracker.
func (b *Tabs) Receive(text string) {
	var s tracker.Shared
	b.mu.Lock()
	fn := b.sub
	b.mu.Unlock()
	if fn != nil && json.Unmarshal([]byte(text), &s) == nil {
		fn(s)
	}
}
