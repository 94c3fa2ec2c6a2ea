// Package session owns who may sign in and who is signed in: the users file and its demo
// default, password checks, and the server-side session store with its idle and absolute
// timeouts.
//
// Session ids are 256-bit random strings that appear only in the session cookie; the store
// keys records by their SHA-256, and logs see only Fingerprint. The package never mints
// tokens, never sees the API key and never writes HTTP responses.
package session
