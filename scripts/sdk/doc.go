// Package sdk holds the official-SDK witness tests: the Node project beside this file pins
// @cartesia/cartesia-js, and sdk_test.go starts bin/emulator and bin/server over TLS (a CA
// made at test time), runs the Node tests that drive the SDK against both, and decodes the
// audio they saved with the tone code. The package has no code of its own; it never talks
// to anything but the loopback servers it started, and it never installs packages (make
// test runs `npm ci` first).
//
// Run it with `make test`, or after `npm ci --prefix scripts/sdk` with
// `go test ./scripts/sdk/`; SDK_REQUIRED=1 turns a missing node or node_modules from a skip
// into a failure.
package sdk
