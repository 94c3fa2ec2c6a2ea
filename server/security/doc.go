// Package security holds the black-box security suite of the companion server: one test
// per item of the attack checklist in /work/shared/reference/security.md that the
// per-package tests do not already prove end to end. docs/security-checklist.md maps
// every item and invariant to the tests that prove it.
//
// Each test composes the whole server the way cmd/server does (api.New with the real
// token.Minter, a seal.Sealer and a session.Directory) behind an httptest server with
// cmd/server's limits, pointed over TLS at sectest.FakeCartesia, and ends with the
// sectest post-conditions G1-G4: no secret in any answer or log line, the API key only on
// the mint request, upstream routes only from the proxy's table, and no connection to the
// evil listener.
//
// Items where the product falls short are written as tests that skip with "gap: ..."
// and their reason. Setting VOXGATE_SECURITY_GAPS=1 runs them, so that they can be seen
// to fail today and to pass once the gap is closed.
//
// The package has no non-test code besides this comment.
package security
