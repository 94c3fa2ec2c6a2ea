package proxy

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Query limits. Cartesia's longest documented parameter set is 100 key terms of at most
// 1200 characters together; these bounds leave room for that and refuse anything much
// larger before it costs an upstream request.
const (
	maxQueryBytes = 8 << 10
	maxQueryValue = 1200
)

// upstreamQuery answers the route's allowlisted part of the client's query string, or
// answers 400 bad_request and returns false for a query that breaks the route's rules.
// Parameters off the allowlist are dropped silently: clients such as Cartesia's SDK add
// their own (access_token, cartesia_version, cartesia_client), and the proxy supplies
// credentials and version itself.
func (c *call) upstreamQuery(w http.ResponseWriter, r *http.Request) (string, bool) {
	q, err := filterQuery(c.rt.Query, r.URL.RawQuery)
	if err != nil {
		c.fail(w, http.StatusBadRequest, "bad_request", err.Error())
		return "", false
	}
	return q, true
}

// filterQuery keeps the parameters named in allow, each at most its allowed number of
// times, and re-encodes them.
func filterQuery(allow map[string]int, raw string) (string, error) {
	if len(allow) == 0 || raw == "" {
		return "", nil
	}
	if len(raw) > maxQueryBytes {
		return "", fmt.Errorf("the query string is over %d bytes", maxQueryBytes)
	}
	in, err := url.ParseQuery(raw)
	if err != nil {
		return "", fmt.Errorf("the query string is malformed")
	}

	out := url.Values{}
	for name, most := range allow {
		vals := in[name]
		if len(vals) > most {
			// A repeated parameter would leave it to upstream which copy counts; refuse
			// rather than guess.
			return "", fmt.Errorf("the query parameter %q may appear at most %d times",
				name, most)
		}
		for _, v := range vals {
			if len(v) > maxQueryValue || strings.ContainsAny(v, "\x00\r\n") {
				return "", fmt.Errorf("the query parameter %q has an invalid value", name)
			}
		}
		if len(vals) > 0 {
			out[name] = vals
		}
	}
	return out.Encode(), nil
}
