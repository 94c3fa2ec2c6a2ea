package proxy

import (
	"fmt"
	"net/url"
)

// ParseOrigin accepts an http or https origin, scheme://host[:port] with at most a
// trailing "/", and returns it without that slash, with its host[:port]. User info, a
// path, a query or a fragment are refused: in a configured origin they are a mistake, and
// in an upstream they could carry credentials or redirect paths. It is the one origin
// parser of the server: the public origin, the upstream and the CORS origins all go
// through it.
//
// An Origin header has the returned form exactly, so an origin that must match one byte
// for byte (see IsExactOrigin) must equal what ParseOrigin returns.
func ParseOrigin(s string) (origin, host string, err error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.User != nil || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" ||
		(u.Path != "" && u.Path != "/") {
		return "", "", fmt.Errorf("proxy: %q is not an http(s) origin, scheme://host[:port]", s)
	}
	return u.Scheme + "://" + u.Host, u.Host, nil
}

// IsExactOrigin reports whether s is exactly scheme://host[:port] for http or https, the
// form an Origin header takes; anything else could never match one byte for byte.
func IsExactOrigin(s string) bool {
	origin, _, err := ParseOrigin(s)
	return err == nil && origin == s
}
