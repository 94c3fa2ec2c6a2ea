//go:build !js

// Package e2e drives the real voxgate server binary with a real headless Chromium: it signs
// in through the demo page, speaks, decodes the audio the page received, and reads the
// server's JSON log to check token minting and that no secret is ever logged.
//
// It owns no production code; everything lives in its tests. The server binary comes from
// $VOXGATE_BIN (make test builds it as bin/server) and the browser from /usr/bin/chromium
// (or $CHROMIUM). When either is missing the tests skip, unless E2E_REQUIRED=1 (make test
// sets it), which turns the skip into a failure.
//
// The server runs with the built-in emulator only: the tests start it with a clean
// environment, so a CARTESIA_API_KEY in the developer's shell never reaches it.
package e2e
