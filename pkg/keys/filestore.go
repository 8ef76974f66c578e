package keys

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"time"
)

// FileStore keeps keys and teams in one JSON file, for a single gateway
// instance (and the CLI on the same host). Every change takes an exclusive
// flock on "<path>.lock", re-reads the file, applies the change and
// replaces the file atomically (write a temporary file, fsync, rename), so
// the gateway and a CLI run never lose each other's writes and a reader
// never sees a half-written file. Version is answered from a stat when the
// file has not changed. Safe for concurrent use.
type FileStore struct {
	path string
	mu   sync.Mutex // serialises this process's writers; flock does the others

	statMu  sync.Mutex
	stat    fileStamp
	version uint64
}

// fileStamp identifies one written version of the file: the rename in
// every write gives it a new inode.
type fileStamp struct {
	ino   uint64
	size  int64
	mtime time.Time
}

// fileData is the file's JSON document.
type fileData struct {
	Version uint64            `json:"version"`
	Keys    map[string]Record `json:"keys"`
	Teams   map[string]Team   `json:"teams"`
}

// OpenFileStore opens (and on first write creates) the store at path. The
// directory must exist. The file holds hashes only, yet it is written with
// mode 0600.
func OpenFileStore(path string) (*FileStore, error) {
	if path == "" {
		return nil, fmt.Errorf("%w: file store path is empty", ErrInvalid)
	}
	if _, err := os.Stat(filepath.Dir(path)); err != nil {
		return nil, fmt.Errorf("file store directory: %w", err)
	}
	s := &FileStore{path: path}
	if _, err := s.read(); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *FileStore) read() (fileData, error) {
	d := fileData{Keys: map[string]Record{}, Teams: map[string]Team{}}
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return d, nil
	}
	if err != nil {
		return d, fmt.Errorf("%w: read %s: %w", ErrStoreUnavailable, s.path, err)
	}
	if err := json.Unmarshal(b, &d); err != nil {
		return d, fmt.Errorf("%w: %s is not a key store file: %w", ErrStoreUnavailable, s.path, err)
	}
	if d.Keys == nil {
		d.Keys = map[string]Record{}
	}
	if d.Teams == nil {
		d.Teams = map[string]Team{}
	}
	return d, nil
}

// mutate runs fn on the current content under both locks and, when fn
// returns nil, writes the result with the version incremented.
func (s *FileStore) mutate(ctx context.Context, fn func(*fileData) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	lock, err := os.OpenFile(s.path+".lock", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return fmt.Errorf("%w: open lock file: %w", ErrStoreUnavailable, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("%w: lock %s: %w", ErrStoreUnavailable, s.path, err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	d, err := s.read()
	if err != nil {
		return err
	}
	if err := fn(&d); err != nil {
		return err
	}
	d.Version++
	return s.write(d)
}

func (s *FileStore) write(d fileData) error {
	b, err := json.MarshalIndent(d, "", "  ")
	if err != nil {
		return fmt.Errorf("encode key store: %w", err)
	}
	if err := writeFileAtomic(s.path, append(b, '\n')); err != nil {
		return fmt.Errorf("%w: write %s: %w", ErrStoreUnavailable, s.path, err)
	}
	return nil
}

// writeFileAtomic replaces path with data: a temporary file in the same
// directory, mode 0600, synced, then renamed over path.
func writeFileAtomic(path string, data []byte) (err error) {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = tmp.Close()
			_ = os.Remove(tmp.Name())
		}
	}()
	if err = tmp.Chmod(0o600); err != nil {
		return err
	}
	if _, err = tmp.Write(data); err != nil {
		return err
	}
	if err = tmp.Sync(); err != nil {
		return err
	}
	if err = tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// CreateKey implements [Store].
func (s *FileStore) CreateKey(ctx context.Context, r Record) error {
	return s.mutate(ctx, func(d *fileData) error {
		if _, ok := d.Keys[r.ID]; ok {
			return fmt.Errorf("key %s: %w", r.ID, ErrExists)
		}
		d.Keys[r.ID] = r.clone()
		return nil
	})
}

// UpdateKey implements [Store].
func (s *FileStore) UpdateKey(ctx context.Context, id string, fn func(*Record) error) (Record, error) {
	var out Record
	err := s.mutate(ctx, func(d *fileData) error {
		r, ok := d.Keys[id]
		if !ok {
			return fmt.Errorf("key %s: %w", id, ErrNotFound)
		}
		r = r.clone()
		if err := fn(&r); err != nil {
			return err
		}
		r.ID = id
		d.Keys[id] = r
		out = r.clone()
		return nil
	})
	return out, err
}

// GetKey implements [Store].
func (s *FileStore) GetKey(ctx context.Context, id string) (Record, error) {
	d, err := s.read()
	if err != nil {
		return Record{}, err
	}
	r, ok := d.Keys[id]
	if !ok {
		return Record{}, fmt.Errorf("key %s: %w", id, ErrNotFound)
	}
	return r, nil
}

// ListKeys implements [Store].
func (s *FileStore) ListKeys(ctx context.Context) ([]Record, error) {
	d, err := s.read()
	if err != nil {
		return nil, err
	}
	return sortedRecords(d.Keys), nil
}

// CreateTeam implements [Store].
func (s *FileStore) CreateTeam(ctx context.Context, t Team) error {
	return s.mutate(ctx, func(d *fileData) error {
		if _, ok := d.Teams[t.ID]; ok {
			return fmt.Errorf("team %s: %w", t.ID, ErrExists)
		}
		d.Teams[t.ID] = t.clone()
		return nil
	})
}

// UpdateTeam implements [Store].
func (s *FileStore) UpdateTeam(ctx context.Context, id string, fn func(*Team) error) (Team, error) {
	var out Team
	err := s.mutate(ctx, func(d *fileData) error {
		t, ok := d.Teams[id]
		if !ok {
			return fmt.Errorf("team %s: %w", id, ErrNotFound)
		}
		t = t.clone()
		if err := fn(&t); err != nil {
			return err
		}
		t.ID = id
		d.Teams[id] = t
		out = t.clone()
		return nil
	})
	return out, err
}

// GetTeam implements [Store].
func (s *FileStore) GetTeam(ctx context.Context, id string) (Team, error) {
	d, err := s.read()
	if err != nil {
		return Team{}, err
	}
	t, ok := d.Teams[id]
	if !ok {
		return Team{}, fmt.Errorf("team %s: %w", id, ErrNotFound)
	}
	return t, nil
}

// ListTeams implements [Store].
func (s *FileStore) ListTeams(ctx context.Context) ([]Team, error) {
	d, err := s.read()
	if err != nil {
		return nil, err
	}
	return sortedTeams(d.Teams), nil
}

// DeleteTeam implements [Store].
func (s *FileStore) DeleteTeam(ctx context.Context, id string) error {
	return s.mutate(ctx, func(d *fileData) error {
		if _, ok := d.Teams[id]; !ok {
			return fmt.Errorf("team %s: %w", id, ErrNotFound)
		}
		delete(d.Teams, id)
		return nil
	})
}

// Version implements [Store]: a stat, and a read only when the file was
// replaced since the last call.
func (s *FileStore) Version(ctx context.Context) (uint64, error) {
	fi, err := os.Stat(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: stat %s: %w", ErrStoreUnavailable, s.path, err)
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	s.statMu.Lock()
	defer s.statMu.Unlock()
	if st == s.stat {
		return s.version, nil
	}
	d, err := s.read()
	if err != nil {
		return 0, err
	}
	// The stamp taken before the read may belong to an older file than
	// the one read; the next call then reads again, which is harmless.
	s.stat, s.version = st, d.Version
	return d.Version, nil
}

// Snapshot implements [Store].
func (s *FileStore) Snapshot(ctx context.Context) (Snapshot, error) {
	d, err := s.read()
	if err != nil {
		return Snapshot{}, err
	}
	return Snapshot{Version: d.Version, Keys: sortedRecords(d.Keys), Teams: sortedTeams(d.Teams)}, nil
}

// Close implements [Store]; a FileStore holds nothing open.
func (s *FileStore) Close() error { return nil }

func sortedRecords(m map[string]Record) []Record {
	out := make([]Record, 0, len(m))
	for _, r := range m {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

func sortedTeams(m map[string]Team) []Team {
	out := make([]Team, 0, len(m))
	for _, t := range m {
		out = append(out, t)
	}
	slices.SortFunc(out, func(a, b Team) int { return cmp.Compare(a.ID, b.ID) })
	return out
}
