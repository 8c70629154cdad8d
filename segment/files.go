package segment

import (
	"fmt"
	"sync"
	"syscall"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// DefaultMaxOpenFiles is the default bound of a Files cache.
const DefaultMaxOpenFiles = 1024

// Files bounds the segment files held open by any number of logs: files are
// opened on demand and, past the bound, the least recently used one that no
// operation is using is closed (it is opened again when next needed). One
// Files is shared by every log of a store. Its methods are safe for
// concurrent use.
//
// A file is pinned while a read, write or fdatasync on it runs; pinned files
// are never closed, so the bound is soft by at most the number of operations
// in flight. Closing a file with unsynced writes is safe: the next fdatasync
// reopens it, and Linux reports a writeback error that nobody has seen yet
// to the next fdatasync on the file, whichever descriptor it comes from.
type Files struct {
	mu    sync.Mutex
	max   int
	open  int
	head  handle // sentinel of the LRU ring of open, unpinned handles
	stats FileStats
}

// FileStats are a Files cache's counters.
type FileStats struct {
	// Open is the number of files open now; Opens and Evictions count
	// opens and closes forced by the bound since NewFiles.
	Open             int
	Opens, Evictions int64
}

// handle is one segment file as the cache knows it.
type handle struct {
	fs   vfs.FS
	path string // current path; changes when a prepared file is renamed
	f    vfs.File
	rw   bool // f was opened read-write
	pins int
	// LRU ring links, set while open and unpinned
	prev, next *handle
}

// NewFiles returns a cache holding at most max files open (<= 0:
// DefaultMaxOpenFiles).
func NewFiles(max int) *Files {
	if max <= 0 {
		max = DefaultMaxOpenFiles
	}
	c := &Files{max: max}
	c.head.prev, c.head.next = &c.head, &c.head
	return c
}

// Max returns the bound.
func (c *Files) Max() int { return c.max }

// Stats returns the cache's counters.
func (c *Files) Stats() FileStats {
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.stats
	st.Open = c.open
	return st
}

func (c *Files) unlinkLocked(h *handle) {
	if h.prev != nil {
		h.prev.next, h.next.prev = h.next, h.prev
		h.prev, h.next = nil, nil
	}
}

// adopt registers an already open file (just created) with the cache,
// pinned once.
func (c *Files) adopt(h *handle, f vfs.File, rw bool) {
	c.mu.Lock()
	h.f, h.rw, h.pins = f, rw, 1
	c.open++
	c.stats.Opens++
	c.mu.Unlock()
}

// acquire returns h's file, opening it (read-write if rw) when needed, and
// pins it until release.
func (c *Files) acquire(h *handle, rw bool) (vfs.File, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if h.f != nil && (h.rw || !rw) {
		c.unlinkLocked(h)
		h.pins++
		return h.f, nil
	}
	if h.f != nil {
		// Open read-only, needed read-write: reopen once no one uses it.
		if h.pins > 0 {
			return nil, fmt.Errorf("segment: %s in use read-only", h.path)
		}
		c.unlinkLocked(h)
		h.f.Close()
		h.f = nil
		c.open--
	}
	c.evictLocked(1)
	var f vfs.File
	var err error
	if rw {
		f, err = h.fs.OpenReadWrite(h.path, vfs.WriteCategoryUnspecified)
	} else {
		f, err = h.fs.Open(h.path)
	}
	if err != nil {
		return nil, fmt.Errorf("segment: open %s: %w", h.path, err)
	}
	h.f, h.rw, h.pins = f, rw, 1
	c.open++
	c.stats.Opens++
	return f, nil
}

// release unpins h; an unpinned open file joins the LRU ring and the bound
// is enforced.
func (c *Files) release(h *handle) {
	c.mu.Lock()
	h.pins--
	if h.pins == 0 && h.f != nil {
		// most recent at head.next
		h.next, h.prev = c.head.next, &c.head
		c.head.next.prev = h
		c.head.next = h
		c.evictLocked(0)
	}
	c.mu.Unlock()
}

// evictLocked closes least recently used files until room more would fit.
func (c *Files) evictLocked(room int) {
	for c.open+room > c.max {
		v := c.head.prev
		if v == &c.head {
			return // everything open is pinned
		}
		c.unlinkLocked(v)
		v.f.Close()
		v.f = nil
		c.open--
		c.stats.Evictions++
	}
}

// forget closes h's file for good (the segment is removed or the log
// closed). A pinned handle is closed by its last release.
func (c *Files) forget(h *handle) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.unlinkLocked(h)
	if h.f != nil && h.pins == 0 {
		h.f.Close()
		h.f = nil
		c.open--
	}
}

// rename changes the path h is reopened by.
func (c *Files) rename(h *handle, path string) {
	c.mu.Lock()
	h.path = path
	c.mu.Unlock()
}

// truncateFile cuts f to size in place. It uses ftruncate(2) where the file
// has a descriptor; otherwise (in-memory file systems in tests) it zeroes
// the bytes from size to the end, which recovery reads as the clean end of
// a segment.
func truncateFile(f vfs.File, size int64) error {
	if t, ok := f.(interface{ Truncate(int64) error }); ok {
		return t.Truncate(size)
	}
	if fd := f.Fd(); fd != vfs.InvalidFd {
		for {
			err := syscall.Ftruncate(int(fd), size)
			if err != syscall.EINTR {
				return err
			}
		}
	}
	st, err := f.Stat()
	if err != nil {
		return err
	}
	end := st.Size()
	if end <= size {
		return nil
	}
	zero := make([]byte, min(end-size, 64<<10))
	for off := size; off < end; off += int64(len(zero)) {
		n := min(int64(len(zero)), end-off)
		if _, err := f.WriteAt(zero[:n], off); err != nil {
			return err
		}
	}
	return nil
}
