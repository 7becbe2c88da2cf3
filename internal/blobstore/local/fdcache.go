package local

import (
	"container/list"
	"fmt"
	"os"
	"sync"
	"syscall"

	"coffer/internal/blobstore"
)

// openFiles is how many files GetRange keeps open (an LRU).
const openFiles = 64

// fdCache keeps recently read objects open for GetRange, so that a ranged
// read costs one stat of the path and one pread instead of
// open+fstat+pread+close. A cached file is used only while the path still
// names the same file (same device and inode): an object replaced (Put
// renames a new file over it) or deleted — by this Store or by another
// process — is never read through a stale descriptor. Descriptors are
// reference-counted, so eviction never closes one that a read is using.
type fdCache struct {
	mu    sync.Mutex
	files map[string]*cachedFile
	lru   list.List // of *cachedFile, most recent first
}

type cachedFile struct {
	name     string
	f        *os.File
	dev, ino uint64
	size     int64
	refs     int
	gone     bool // evicted or replaced: close when refs reach 0
	elem     *list.Element

	directOnce sync.Once
	direct     *os.File // the same file opened for direct I/O; nil if unavailable
}

// close closes cf's descriptors.
func (cf *cachedFile) close() {
	cf.f.Close()
	if cf.direct != nil {
		cf.direct.Close()
	}
}

// fileID returns the device and inode of a stat result.
func fileID(fi os.FileInfo) (dev, ino uint64, ok bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, 0, false
	}
	return uint64(st.Dev), st.Ino, true
}

// acquire returns an open file for name and its size; release it with
// release. A missing object is blobstore.ErrNotFound.
func (s *Store) acquire(name string) (*cachedFile, error) {
	path := s.Path(name)
	fi, err := os.Stat(path)
	if err != nil {
		s.forget(name) // deleted behind our back: release its descriptor
		return nil, notFound("get", name, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("get %s: %w", name, blobstore.ErrNotFound)
	}
	dev, ino, ok := fileID(fi)
	c := &s.fds
	c.mu.Lock()
	if cf := c.files[name]; cf != nil {
		if ok && cf.dev == dev && cf.ino == ino {
			cf.refs++
			c.lru.MoveToFront(cf.elem)
			c.mu.Unlock()
			return cf, nil
		}
		c.dropLocked(cf) // replaced or deleted since it was opened
	}
	c.mu.Unlock()

	f, err := s.openFile(name)
	if err != nil {
		return nil, err
	}
	ofi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("get %s: %w", name, err)
	}
	odev, oino, ok := fileID(ofi)
	cf := &cachedFile{name: name, f: f, dev: odev, ino: oino, size: ofi.Size(), refs: 1}
	if !ok {
		cf.gone = true // cannot be validated later: do not cache
		return cf, nil
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if old := c.files[name]; old != nil {
		c.dropLocked(old)
	}
	if c.files == nil {
		c.files = make(map[string]*cachedFile)
	}
	c.files[name] = cf
	cf.elem = c.lru.PushFront(cf)
	for c.lru.Len() > openFiles {
		c.dropLocked(c.lru.Back().Value.(*cachedFile))
	}
	return cf, nil
}

// release ends a use of cf.
func (s *Store) release(cf *cachedFile) {
	c := &s.fds
	c.mu.Lock()
	cf.refs--
	closeIt := cf.gone && cf.refs == 0
	c.mu.Unlock()
	if closeIt {
		cf.close()
	}
}

// forget drops name from the cache (after this Store replaced or deleted
// it; the stat check would catch that too, this just frees the descriptor).
func (s *Store) forget(name string) {
	c := &s.fds
	c.mu.Lock()
	defer c.mu.Unlock()
	if cf := c.files[name]; cf != nil {
		c.dropLocked(cf)
	}
}

// dropLocked removes cf from the cache, closing it unless a read uses it.
func (c *fdCache) dropLocked(cf *cachedFile) {
	if c.files[cf.name] == cf {
		delete(c.files, cf.name)
	}
	if cf.elem != nil {
		c.lru.Remove(cf.elem)
		cf.elem = nil
	}
	cf.gone = true
	if cf.refs == 0 {
		cf.close()
	}
}

// openCount reports the cached descriptors (for tests).
func (s *Store) openCount() int {
	s.fds.mu.Lock()
	defer s.fds.mu.Unlock()
	return s.fds.lru.Len()
}

// Close closes the files kept open for ranged reads. The Store stays usable
// (later reads open files again).
func (s *Store) Close() error {
	c := &s.fds
	c.mu.Lock()
	defer c.mu.Unlock()
	for c.lru.Len() > 0 {
		c.dropLocked(c.lru.Back().Value.(*cachedFile))
	}
	return nil
}
