// Package token owns the Cartesia API key and the access tokens minted with it.
//
// It is the only package that ever reads the key: APIKey renders as [REDACTED] in every
// format, and the key leaves the process on exactly one kind of request, the server-built
// POST {upstream}/access-token. A Minter asks for one grant per token and returns a Token
// whose text (Value) is redacted the same way. The package never sets cookies, never
// answers browsers and never logs; callers decide what to do with a Token.
package token
