package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
)

// spoolMemory is how much of an upload is held in memory before it moves to a file: a
// few seconds of 16 kHz audio, so that short clips (the page's usual case) never touch
// the disk, while the memory all uploads in flight can take stays small.
const spoolMemory = 256 << 10

// Spool refusals: the user's share or everybody's is spoken for.
var (
	errSpoolUserFull = errors.New("proxy: the user's upload spool cap is reached")
	errSpoolFull     = errors.New("proxy: the upload spool cap is reached")
)

// spoolIOError is a failure of the spool itself (the disk is full, the directory is not
// writable): the server's problem, not the client's.
type spoolIOError struct{ err error }

func (e *spoolIOError) Error() string { return e.err.Error() }
func (e *spoolIOError) Unwrap() error { return e.err }

// spool holds one checked upload between the client and upstream: in memory up to
// spoolMemory bytes, then in a temporary file. Every byte is reserved in the proxy's
// spoolBudget before it is stored. Close releases the reservation and removes the file;
// the handler defers it, so it runs however the call ends.
type spool struct {
	p    *Proxy
	user string

	mem  []byte
	file *os.File
	// name is the file's path while it still has one: it is unlinked as soon as it is
	// open where the system allows it (nothing is left behind even if the process
	// dies), else when the spool is closed.
	name string
	// size is how many bytes are stored; reserved how many the budget lent.
	size     int64
	reserved int64
}

func (p *Proxy) newSpool(user string) *spool { return &spool{p: p, user: user} }

// Write implements io.Writer.
func (s *spool) Write(b []byte) (int, error) {
	if err := s.p.spools.reserve(s.user, int64(len(b))); err != nil {
		return 0, err
	}
	s.reserved += int64(len(b))

	if s.file == nil && len(s.mem)+len(b) <= spoolMemory {
		s.mem = append(s.mem, b...)
		s.size += int64(len(b))
		return len(b), nil
	}
	if s.file == nil {
		if err := s.toFile(); err != nil {
			return 0, err
		}
	}
	n, err := s.file.Write(b)
	s.size += int64(n)
	if err != nil {
		return n, &spoolIOError{fmt.Errorf("proxy: write upload spool: %w", err)}
	}
	return n, nil
}

// toFile moves what is in memory to a new temporary file, where the rest goes too.
func (s *spool) toFile() error {
	f, err := os.CreateTemp(s.p.cfg.SpoolDir, "voxgate-upload-*")
	if err != nil {
		return &spoolIOError{fmt.Errorf("proxy: create upload spool: %w", err)}
	}
	s.p.spoolFiles.Add(1)
	s.file, s.name = f, f.Name()
	if os.Remove(s.name) == nil {
		s.name = ""
	}

	if _, err := f.Write(s.mem); err != nil {
		return &spoolIOError{fmt.Errorf("proxy: write upload spool: %w", err)}
	}
	s.mem = nil
	return nil
}

// reader returns the stored bytes from the start, size of them.
func (s *spool) reader() io.Reader {
	if s.file != nil {
		return io.NewSectionReader(s.file, 0, s.size)
	}
	return bytes.NewReader(s.mem)
}

// Close releases the budget and removes the file. It may be called more than once.
//
// The transport may still be reading the body when the handler ends (an upstream that
// answered early); its reads then fail on the closed file, which ends that request.
func (s *spool) Close() error {
	s.p.spools.release(s.user, s.reserved)
	s.reserved = 0
	s.mem = nil
	if s.file == nil {
		return nil
	}
	err := s.file.Close()
	if s.name != "" {
		if rerr := os.Remove(s.name); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
			err = errors.Join(err, rerr)
		}
		s.name = ""
	}
	s.file = nil
	return err
}

// spoolBudget accounts the bytes all spools hold, per user and in total.
//
// Limitation: the accounts live in this process; replicas sharing one disk each allow
// the full total.
type spoolBudget struct {
	perUser, total int64

	mu     sync.Mutex
	used   int64
	byUser map[string]int64
}

func newSpoolBudget(perUser, total int64) *spoolBudget {
	return &spoolBudget{perUser: perUser, total: total, byUser: map[string]int64{}}
}

// reserve lends user n more bytes, or refuses when either cap would be passed.
func (b *spoolBudget) reserve(user string, n int64) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.byUser[user]+n > b.perUser:
		return errSpoolUserFull
	case b.used+n > b.total:
		return errSpoolFull
	}
	b.byUser[user] += n
	b.used += n
	return nil
}

// release returns n bytes that user reserved.
func (b *spoolBudget) release(user string, n int64) {
	if n == 0 {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.used -= n
	if b.byUser[user] -= n; b.byUser[user] <= 0 {
		delete(b.byUser, user)
	}
}

// inUse reports the bytes reserved now, for tests.
func (b *spoolBudget) inUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.used
}
