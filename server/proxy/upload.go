package proxy

import (
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/voxgate/voxgate/server/token"
)

// errUploadTooLarge marks an upload that went past the route's BodyLimit.
var errUploadTooLarge = errors.New("proxy: upload over the size limit")

// openUpload checks a multipart upload's media type and declared length and returns its
// body, ready to be streamed upstream. Nothing is read yet: the transport reads the body
// while it sends it, so the upstream sees the first bytes before the client has sent the
// last, and the proxy never holds more than a buffer of the file.
func (c *call) openUpload(w http.ResponseWriter, r *http.Request) (*uploadBody, bool) {
	mt, params, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || mt != "multipart/form-data" || params["boundary"] == "" {
		c.fail(w, http.StatusUnsupportedMediaType, "unsupported_media_type",
			"the request body must be multipart/form-data with a boundary")
		return nil, false
	}

	if r.ContentLength > c.rt.BodyLimit {
		w.Header().Set("Connection", "close")
		c.fail(w, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the upload is over %d bytes", c.rt.BodyLimit))
		return nil, false
	}

	now := time.Now()
	return &uploadBody{
		r:        r.Body,
		limit:    c.rt.BodyLimit,
		rc:       http.NewResponseController(w),
		pause:    c.p.cfg.BodyTimeout,
		deadline: now.Add(c.p.cfg.UploadTimeout),
	}, true
}

// uploadFailed answers the upload's own failure, if it had one, and reports whether it
// did. It is called when sending upstream failed: a body that broke the size or time
// limits is the client's fault, not the upstream's.
func (c *call) uploadFailed(w http.ResponseWriter, u *uploadBody) bool {
	err := u.failure()
	switch {
	case err == nil:
		return false
	case errors.Is(err, errUploadTooLarge):
		w.Header().Set("Connection", "close")
		c.fail(w, http.StatusRequestEntityTooLarge, "body_too_large",
			fmt.Sprintf("the upload is over %d bytes", c.rt.BodyLimit))
	case token.IsTimeout(err):
		w.Header().Set("Connection", "close")
		c.fail(w, http.StatusRequestTimeout, "request_timeout",
			"the upload did not arrive in time")
	default:
		// The client stopped sending (hung up, or a malformed chunked body); there may be
		// nobody left to answer.
		c.status, c.note = http.StatusBadRequest, "client_body_failed"
		w.Header().Set("Connection", "close")
		c.fail(w, http.StatusBadRequest, "bad_request", "could not read the upload")
	}
	return true
}

// uploadBody is a client's request body on its way upstream. It counts bytes, stops at
// the size limit, and keeps the connection's read deadline moving: each read must begin
// within pause of the last one, and the whole body must arrive before deadline, so a
// client trickling bytes cannot hold the handler (or the upstream request) open.
//
// Only the transport calls Read, on its own goroutine and possibly after Do has returned
// (when upstream answers before reading everything); the handler reads the count and the
// failure concurrently, hence the atomics. Once the handler is done it detaches the body,
// and Read stops touching the connection's deadlines: after the handler returns the
// ResponseWriter, and so the connection it controls, is no longer ours.
type uploadBody struct {
	r        io.Reader
	limit    int64
	rc       *http.ResponseController
	pause    time.Duration
	deadline time.Time

	n        atomic.Int64
	err      atomic.Pointer[error]
	complete atomic.Bool

	mu       sync.Mutex // guards detached and every use of rc
	detached bool
}

// setReadDeadline moves the connection's read deadline unless the body is detached.
func (u *uploadBody) setReadDeadline(t time.Time) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if !u.detached {
		_ = u.rc.SetReadDeadline(t) // unsupported on recorders; fine
	}
}

// detach is called by the handler before it returns.
func (u *uploadBody) detach() {
	u.mu.Lock()
	u.detached = true
	u.mu.Unlock()
}

// Read implements io.Reader.
func (u *uploadBody) Read(p []byte) (int, error) {
	if err := u.failure(); err != nil {
		return 0, err
	}

	next := time.Now().Add(u.pause)
	if next.After(u.deadline) {
		next = u.deadline
	}
	u.setReadDeadline(next)

	// Read at most one byte past the limit: enough to know the body is too large.
	if room := u.limit + 1 - u.n.Load(); int64(len(p)) > room {
		p = p[:room]
	}
	n, err := u.r.Read(p)
	total := u.n.Add(int64(n))

	switch {
	case total > u.limit:
		u.n.Store(u.limit)
		n, err = 0, errUploadTooLarge
	case err == io.EOF:
		// Complete: lift the deadline, as ReadBody does, so that net/http's background
		// read that watches for the client hanging up does not trip over it later.
		u.complete.Store(true)
		u.setReadDeadline(time.Time{})
		return n, err
	}
	if err != nil {
		u.err.CompareAndSwap(nil, &err)
	}
	return n, err
}

// count is how many bytes have been read so far.
func (u *uploadBody) count() int64 { return u.n.Load() }

// failure is the error that stopped the body, if any (io.EOF is not one).
func (u *uploadBody) failure() error {
	if p := u.err.Load(); p != nil {
		return *p
	}
	return nil
}
