package costlog

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
)

// File and directory permissions for cost record files. Records hold user
// ids and key hashes, not secrets, but are not for every local user.
const (
	fileMode = 0o640
	dirMode  = 0o750
)

// FileSink appends records as JSON lines to a file. Each batch is encoded
// into one buffer, written with one write call on a file opened with
// O_APPEND, and then fsync'ed: a record counts as written only after the
// fsync of its batch returned, so an acknowledged record survives a crash
// of the process or of the machine (as far as the disk honours fsync). If
// a write fails, the file is truncated back to its size before the batch
// so that no partial line stays behind for the retry to follow.
//
// FileSink is safe for concurrent use; Write, Reopen and Close serialise.
type FileSink struct {
	path string

	mu  sync.Mutex
	f   *os.File
	buf []byte
}

// NewFileSink opens path for appending, creating the file (mode 0640) and
// its missing parent directories (mode 0750).
func NewFileSink(path string) (*FileSink, error) {
	if path == "" {
		return nil, errors.New("costlog: file sink: empty path")
	}
	f, err := openAppend(path)
	if err != nil {
		return nil, err
	}
	return &FileSink{path: path, f: f}, nil
}

func openAppend(path string) (*os.File, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, dirMode); err != nil {
		return nil, fmt.Errorf("costlog: create directory for %s: %w", path, err)
	}
	_, statErr := os.Stat(path)
	created := errors.Is(statErr, fs.ErrNotExist)
	if !created {
		if err := dropTornTail(path); err != nil {
			return nil, err
		}
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, fileMode)
	if err != nil {
		return nil, fmt.Errorf("costlog: open %s: %w", path, err)
	}
	if created {
		// Make the new directory entry durable too; a failure here only
		// weakens durability of the name, so it is not fatal.
		if d, err := os.Open(dir); err == nil {
			_ = d.Sync()
			_ = d.Close()
		}
	}
	return f, nil
}

// dropTornTail truncates path after its last newline. A process killed
// inside Write (SIGKILL, power loss) can leave part of a batch's last line:
// that batch was never acknowledged, so the partial line is not a record
// anyone was promised, and appending after it would corrupt the next one.
func dropTornTail(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("costlog: open %s: %w", path, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("costlog: stat %s: %w", path, err)
	}
	end := fi.Size()
	buf := make([]byte, 4096)
	for pos := end; pos > 0; {
		n := int64(len(buf))
		if pos < n {
			n = pos
		}
		pos -= n
		if _, err := f.ReadAt(buf[:n], pos); err != nil {
			return fmt.Errorf("costlog: read %s: %w", path, err)
		}
		if i := bytes.LastIndexByte(buf[:n], '\n'); i >= 0 {
			keep := pos + int64(i) + 1
			if keep == end {
				return nil // ends with a complete line
			}
			return truncateTail(f, path, keep)
		}
	}
	if end == 0 {
		return nil
	}
	return truncateTail(f, path, 0) // one partial line and nothing else
}

func truncateTail(f *os.File, path string, size int64) error {
	if err := f.Truncate(size); err != nil {
		return fmt.Errorf("costlog: drop torn tail of %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("costlog: fsync %s: %w", path, err)
	}
	return nil
}

// Name returns "file:" followed by the path.
func (s *FileSink) Name() string { return "file:" + s.path }

// Path returns the file's path.
func (s *FileSink) Path() string { return s.path }

// Write appends batch with one write and one fsync. ctx is checked before
// writing; a write already started is not interrupted.
func (s *FileSink) Write(ctx context.Context, batch []Record) error {
	if len(batch) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return fmt.Errorf("costlog: %s: %w", s.path, os.ErrClosed)
	}
	buf := s.buf[:0]
	for _, r := range batch {
		var err error
		if buf, err = AppendJSON(buf, r); err != nil {
			return err
		}
	}
	s.buf = buf
	var before int64 = -1
	if fi, err := s.f.Stat(); err == nil {
		before = fi.Size()
	}
	if _, err := s.f.Write(buf); err != nil {
		if before >= 0 {
			_ = s.f.Truncate(before)
		}
		return fmt.Errorf("costlog: write %s: %w", s.path, err)
	}
	if err := s.f.Sync(); err != nil {
		return fmt.Errorf("costlog: fsync %s: %w", s.path, err)
	}
	if cap(s.buf) > 4<<20 { // do not pin a buffer grown by one huge batch
		s.buf = nil
	}
	return nil
}

// Reopen opens the path again and swaps the handle, for log rotation:
// after logrotate renamed the file, call Reopen (on SIGHUP) and later
// batches go to a new file at the configured path. On error the old
// handle stays in use.
//
// The new file is opened under the sink's lock, so once it exists at the
// path every later Write goes to it (a write cannot slip in between the
// create and the swap and land in the rotated file).
func (s *FileSink) Reopen() error {
	s.mu.Lock()
	old := s.f
	if old == nil {
		s.mu.Unlock()
		return fmt.Errorf("costlog: reopen %s: %w", s.path, os.ErrClosed)
	}
	f, err := openAppend(s.path)
	if err != nil {
		s.mu.Unlock()
		return err
	}
	s.f = f
	s.mu.Unlock()
	if err := old.Close(); err != nil {
		return fmt.Errorf("costlog: close rotated %s: %w", s.path, err)
	}
	return nil
}

// Close syncs and closes the file. Later writes fail; a second Close
// returns nil.
func (s *FileSink) Close(context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f == nil {
		return nil
	}
	f := s.f
	s.f = nil
	syncErr := f.Sync()
	if err := f.Close(); err != nil {
		return fmt.Errorf("costlog: close %s: %w", s.path, err)
	}
	if syncErr != nil {
		return fmt.Errorf("costlog: fsync %s: %w", s.path, syncErr)
	}
	return nil
}
