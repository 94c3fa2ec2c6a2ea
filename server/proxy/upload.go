package proxy

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// errUploadTooLarge marks an upload that went past the route's BodyLimit.
var errUploadTooLarge = errors.New("proxy: upload over the size limit")

// errUploadTooSlow marks an upload that brought too little in one rate window (see
// Config.UploadMinRate). It is a timeout, answered like the other slow bodies.
var errUploadTooSlow error = uploadTooSlow{}

type uploadTooSlow struct{}

func (uploadTooSlow) Error() string { return "proxy: upload below the minimum rate" }

// Timeout marks it a timeout for token.IsTimeout.
func (uploadTooSlow) Timeout() bool { return true }

// spoolUpload receives a multipart upload whole, checking it as it arrives, and returns
// the spool holding its re-encoding (see copyForm) and that body's Content-Type. Nothing
// is sent upstream until it returns: an upload that is too large, too slow, malformed or
// off the route's form allowlist costs upstream nothing. On failure it has answered the
// client and released everything; on success the caller must Close the spool.
func (c *call) spoolUpload(w http.ResponseWriter, r *http.Request) (*spool, string, bool) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		c.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			"the request body must be multipart/form-data with a boundary")
		return nil, "", false
	}

	if r.ContentLength > c.rt.BodyLimit {
		w.Header().Set("Connection", "close")
		c.fail(w, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the upload is over %d bytes", c.rt.BodyLimit))
		return nil, "", false
	}

	start := time.Now()
	window := c.p.cfg.UploadRateWindow
	body := &uploadBody{
		r:          r.Body,
		limit:      c.rt.BodyLimit,
		rc:         http.NewResponseController(w),
		pause:      c.p.cfg.BodyTimeout,
		deadline:   start.Add(c.p.cfg.UploadTimeout),
		window:     window,
		windowNeed: int64(float64(c.p.cfg.UploadMinRate) * window.Seconds()),
		windowEnd:  start.Add(window),
	}
	sp := c.p.newSpool(c.user)
	ctype, err := copyForm(sp, body, params["boundary"], c.rt.Form)
	if err != nil {
		_ = sp.Close()
		if !body.complete {
			// The rest of the body is still on the connection, which cannot carry
			// another request; closing it spares waiting for that rest.
			w.Header().Set("Connection", "close")
		}
		c.uploadFailed(w, r, err)
		return nil, "", false
	}
	return sp, ctype, true
}

// uploadFailed answers an upload that could not be received: the client's fault (too
// large, too slow, malformed, gone) or the server's (no room to spool it).
func (c *call) uploadFailed(w http.ResponseWriter, r *http.Request, err error) {
	var form *formError
	var spoolErr *spoolIOError
	switch {
	case errors.Is(err, errUploadTooLarge):
		c.fail(w, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the upload is over %d bytes", c.rt.BodyLimit))
	case errors.As(err, &form):
		c.note = "form_rejected"
		c.fail(w, http.StatusBadRequest, "bad_request", form.msg)
	case errors.Is(err, errUploadTooSlow):
		c.note = "upload_too_slow"
		c.fail(w, http.StatusRequestTimeout, "request_timeout",
			fmt.Sprintf("the upload arrived too slowly (under %d KiB/s)",
				max(c.p.cfg.UploadMinRate>>10, 1)))
	case token.IsTimeout(err):
		c.fail(w, http.StatusRequestTimeout, "request_timeout",
			"the upload did not arrive in time")
	case errors.Is(err, errSpoolUserFull):
		c.p.cfg.Logger.Warn("security_rejected", "reason", "upload_spool_user_cap",
			"route", c.route, "user", c.user, "grant", string(c.rt.Grant))
		w.Header().Set("Retry-After", retryAfterCap)
		c.fail(w, http.StatusTooManyRequests, "rate_limited",
			"too many uploads in flight; wait for one to finish")
	case errors.Is(err, errSpoolFull):
		c.p.cfg.Logger.Warn("upload_spool_full", "route", c.route, "user", c.user)
		w.Header().Set("Retry-After", retryAfterCap)
		c.fail(w, http.StatusServiceUnavailable, "unavailable",
			"the server is holding too many uploads; try again shortly")
	case errors.As(err, &spoolErr):
		c.p.cfg.Logger.Error("upload_spool_failed", "route", c.route, "user", c.user,
			"error", spoolErr.Error())
		c.fail(w, http.StatusServiceUnavailable, "unavailable",
			"the server cannot hold the upload now; try again shortly")
	case r.Context().Err() != nil:
		c.status, c.note = 499, "client_closed"
	default:
		// The client stopped sending (a malformed chunked body, a reset); there may be
		// nobody left to answer.
		c.note = "client_body_failed"
		c.fail(w, http.StatusBadRequest, "bad_request", "could not read the upload")
	}
}

// uploadBody is a client's request body as the spooler reads it. It stops at the size
// limit and keeps the connection's read deadline moving: each read must begin within
// pause of the last one, each rate window must bring windowNeed bytes, and the whole
// body must arrive before deadline, so a client trickling bytes cannot hold the handler
// (and its spool) open. Only the handler's goroutine reads it.
type uploadBody struct {
	r        io.Reader
	limit    int64
	rc       *http.ResponseController
	pause    time.Duration
	deadline time.Time
	// window is the length of a rate window, windowEnd the end of the current one and
	// windowBytes what it has brought so far, of the windowNeed it must.
	window      time.Duration
	windowNeed  int64
	windowEnd   time.Time
	windowBytes int64

	n        int64
	err      error
	complete bool
}

// Read implements io.Reader. Its failures are sticky.
func (u *uploadBody) Read(p []byte) (int, error) {
	if u.err != nil {
		return 0, u.err
	}
	now := time.Now()
	if !u.rateHeld(now) {
		u.err = errUploadTooSlow
		return 0, u.err
	}

	// The read must begin within pause, end before the upload's deadline, and bring
	// bytes before the end of the first window still lacking them (this one, or the next
	// when this one has its share): a stalled body is then cut when a window ends short
	// rather than a pause later.
	next := now.Add(u.pause)
	if next.After(u.deadline) {
		next = u.deadline
	}
	due := u.windowEnd
	if u.windowBytes >= u.windowNeed {
		due = due.Add(u.window)
	}
	if next.After(due) {
		next = due
	}
	_ = u.rc.SetReadDeadline(next) // unsupported on recorders; fine

	// Read at most one byte past the limit: enough to know the body is too large.
	if room := u.limit + 1 - u.n; int64(len(p)) > room {
		p = p[:room]
	}
	n, err := u.r.Read(p)
	u.n += int64(n)
	u.windowBytes += int64(n)
	if err != nil && err != io.EOF && token.IsTimeout(err) && !u.rateHeld(time.Now()) {
		err = errUploadTooSlow // the window's deadline, not a pause, ended the read
	}

	switch {
	case u.n > u.limit:
		u.n, u.err = u.limit, errUploadTooLarge
		return 0, u.err
	case err == io.EOF:
		// Complete: lift the deadline, as ReadBody does, so that net/http's background
		// read that watches for the client hanging up does not trip over it while
		// upstream works.
		u.complete = true
		_ = u.rc.SetReadDeadline(time.Time{})
		return n, err
	case err != nil:
		u.err = err
	}
	return n, err
}

// rateHeld closes the rate windows that ended by now, and reports whether each brought
// windowNeed bytes. A body that completes within a window owes nothing for it.
func (u *uploadBody) rateHeld(now time.Time) bool {
	for !now.Before(u.windowEnd) {
		if u.windowBytes < u.windowNeed {
			return false
		}
		u.windowBytes = 0
		u.windowEnd = u.windowEnd.Add(u.window)
	}
	return true
}
