//go:build js && wasm

// Package jsx is the thin glue between Go and the browser's JavaScript: awaiting Promises
// from goroutines, handing Go work back to JavaScript as Promises, copying bytes, Blobs and
// FormData, Go functions that count themselves until released, a small fetch client and a
// WebSocket wrapper over the browser's own (which also reports the real close code).
//
// It owns every call into JavaScript that the wasm client makes, all through
// github.com/hack-pad/safejs so that a JavaScript exception becomes a Go error instead of
// a crash. It never knows voxgate's routes, tokens or error codes, and it never uses
// net/http: linking net/http's client roughly doubles the bundle.
//
// The rule everything here follows: a js.Func callback runs while the JavaScript event
// loop is paused, so it must never wait for anything the event loop delivers (a Promise, a
// fetch). Callbacks copy their arguments, start a goroutine and return; waiting happens in
// goroutines with Await.
package jsx
