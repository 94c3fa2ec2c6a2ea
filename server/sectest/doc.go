// Package sectest is a loopback test harness for attacking the companion server, in the
// spirit of net/http/httptest: a fake Cartesia that records everything it is sent, an
// "evil" listener that must never be reached, a log sink, a recording HTTP client, a
// manual clock, and the post-conditions every security test ends with.
//
// The post-conditions (see Checks) are the global guarantees of the security checklist:
//
//   - G1: no response the test received and no log line contains the canary API key, an
//     access token the fake issued, a cookie value the server set, or "access_token=".
//     The one exception is the JSON body of POST /api/token/direct, which may carry
//     exactly one token by design.
//   - G2: the fake saw the API key only in the Authorization header of POST /access-token.
//   - G3: the fake saw only (method, path) pairs from the allowlist the test passes.
//   - G4: the evil listener accepted no connection.
//
// A fuzz target, which keeps nothing from one input to the next, checks each input with
// CheckAnswer and forgets with LogSink.Take and FakeCartesia.Take.
//
// Everything listens on 127.0.0.1 and everything is torn down with the test. The package
// imports nothing from this module, so any package's tests (internal ones included) can
// use it without an import cycle.
package sectest
