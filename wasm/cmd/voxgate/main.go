//go:build js && wasm

// Command voxgate is the WebAssembly module that web/voxgate.js loads. It exposes the Go
// client (package client) to JavaScript as one object of Promise-returning methods.
//
// It owns the contract with voxgate.js and nothing else: the registration hook, argument
// and result conversion, and how errors and events look in JavaScript. It defines no
// global names of its own: voxgate.js installs one hook object under a name it passes in
// the environment variable VOXGATE_HOOK (go.env), with
//
//	options  {baseURL?: string, marginMs?: number, proactive?: boolean}
//	onEvent  function(type, detail), called for every client event
//	ready    function(api), called once the API object exists
//	fail     function(message), called when the module cannot start
//	lock     optional function(grant) -> Promise<release | null>: the cross-tab lock
//	publish  optional function(json): hands a new token's metadata to the other tabs
//
// With lock present the client shares refreshes between tabs (client.Tabs); voxgate.js
// passes other tabs' tokens to api.adopt(json) and page events to api.check().
//
// The module then waits until api.close() is called, releases every function it handed
// out and exits.
package main

import (
	"errors"
	"os"

	"github.com/hack-pad/safejs"
)

// defaultHook is the hook's global name when VOXGATE_HOOK is not set.
const defaultHook = "__voxgate"

func main() {
	if err := run(); err != nil {
		println("voxgate:", err.Error()) // reaches the browser console
	}
}

func run() error {
	name := os.Getenv("VOXGATE_HOOK")
	if name == "" {
		name = defaultHook
	}
	hook, err := safejs.Global().Get(name)
	if err != nil {
		return err
	}
	if hook.Type() != safejs.TypeObject {
		return errors.New("no registration hook named " + name + "; load the module with voxgate.js")
	}

	b, err := newBridge(hook)
	if err != nil {
		_, _ = hook.Call("fail", err.Error())
		return err
	}
	api, err := b.api()
	if err != nil {
		b.shutdown()
		_, _ = hook.Call("fail", err.Error())
		return err
	}
	if _, err := hook.Call("ready", api); err != nil {
		b.shutdown()
		return err
	}

	<-b.done
	b.shutdown()
	return nil
}
