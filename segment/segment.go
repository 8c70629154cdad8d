package segment

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"
)

// Format constants: part of the format, do not change.
const (
	fileMagic       = "WSEG"
	fileVersion1    = 1 // fixed 24-byte header
	fileVersion     = 2 // 24 bytes + identity block
	fileHeaderSize  = 24
	chunkMagic      = "WCHK"
	chunkVersion1   = 1 // bytes [36, 40) reserved
	chunkVersion    = 2 // bytes [36, 40) count the non-persistent records
	chunkHeaderSize = 40
	// maxIdentity bounds the identity block of a file header.
	maxIdentity   = 1 << 20
	segmentSuffix = ".seg"
	seqDigits     = 20

	// MaxChunkSize bounds the raw (decoded) length of one chunk, and so the
	// encoded size of one record. Part of the format, do not change.
	MaxChunkSize = 64 << 20
)

// Non-format defaults.
const (
	// DefaultSegmentSize is the largest size at which the active segment is
	// rolled.
	DefaultSegmentSize = 64 << 20
	// DefaultMinSegmentSize is the smallest: a log's next segment is sized
	// to twice the bytes its live segments hold, between the two, so that a
	// near-empty queue writes small segments that are deleted soon after
	// they are acked, and a long backlog uses few files.
	DefaultMinSegmentSize = 512 << 10
	// LargeBody is the body size from which an Owned record is written
	// from the caller's buffer as a chunk of its own, without a copy.
	LargeBody = 64 << 10
	// DefaultCacheBytes bounds the decoded chunks a log keeps for reads.
	DefaultCacheBytes = 4 << 20
	// DefaultChunkSize is the raw size at which Append seals on its own.
	DefaultChunkSize = 1 << 20
	// DefaultCacheChunks is the number of decoded chunks kept per log.
	DefaultCacheChunks = 4
)

// Codec selects the compression of chunk payloads. Its values are part of
// the format, do not change.
type Codec uint8

// Codecs.
const (
	// CodecS2 is the default: fast, moderate ratio.
	CodecS2 Codec = 0
	// CodecNone stores payloads raw.
	CodecNone Codec = 1
	// CodecZstd compresses better at more CPU.
	CodecZstd Codec = 2
)

// String returns the codec's name.
func (c Codec) String() string {
	switch c {
	case CodecNone:
		return "none"
	case CodecS2:
		return "s2"
	case CodecZstd:
		return "zstd"
	}
	return fmt.Sprintf("codec(%d)", uint8(c))
}

// Record flags.
const (
	// FlagPersistent marks a message published with delivery-mode 2.
	FlagPersistent uint8 = 1 << 0
	// FlagRedelivered marks a record rewritten after a delivery attempt.
	FlagRedelivered uint8 = 1 << 1
)

// Record is one message in a log.
type Record struct {
	// Seq is assigned by Append and ignored on input.
	Seq       uint64
	Timestamp int64 // unix nanoseconds
	Flags     uint8
	Exchange  string
	// RoutingKey is the key the message was published with.
	RoutingKey string
	// Props holds the AMQP content-header property bytes as received.
	Props []byte
	Body  []byte
	// Owned, on Append, lets the log keep a Body of at least LargeBody
	// bytes without copying it until the record is written and synced: the
	// caller must never modify Body afterwards. It is not stored.
	Owned bool
	// Stable is set on the records View and ViewPinned hand out when the
	// log never reuses or writes the memory Body is in (a large body kept
	// in a buffer of its own, or a chunk too large to be recycled): the
	// caller may then refer to Body after the call, for a vectored write,
	// without modifying it. It is not stored.
	Stable bool
}

// Errors. Corruption is always reported wrapping ErrCorrupt with file and offset.
var (
	// ErrCorrupt marks corrupt data on disk.
	ErrCorrupt = errors.New("segment: corrupt chunk")
	// ErrNotFound is returned by Read for a sequence outside [FirstSeq, NextSeq).
	ErrNotFound = errors.New("segment: record not found")
	// ErrLost is returned by Read for a sequence inside a Gap.
	ErrLost = errors.New("segment: record lost to corruption")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("segment: log closed")
	// ErrTooLarge is returned by Append for a record larger than MaxChunkSize.
	ErrTooLarge = errors.New("segment: record too large")
	// ErrFailing is returned by Append while the log cannot write: a write,
	// fdatasync or file creation failed (the cause is wrapped too, e.g.
	// syscall.ENOSPC). Records accepted before the failure are kept and
	// written again by the Syncer's retries; the log accepts appends again
	// once a retry succeeds.
	ErrFailing = errors.New("segment: log failing writes")
	// ErrNotRemoved is wrapped by the error of a Remove whose directory may
	// still be found under its own name after a crash (its rename, or the
	// sync of that rename, failed).
	ErrNotRemoved = errors.New("segment: log directory not removed")
)

// Options configures a Log.
type Options struct {
	// SegmentSize is the largest size at which the active segment is rolled
	// (default DefaultSegmentSize).
	SegmentSize int64
	// MinSegmentSize is the smallest (default DefaultMinSegmentSize, at most
	// SegmentSize).
	MinSegmentSize int64
	// ChunkSize is the raw pending size at which Append seals a chunk by
	// itself (default DefaultChunkSize, at most MaxChunkSize).
	ChunkSize int
	// Codec compresses chunk payloads (default CodecS2).
	Codec Codec
	// CacheChunks is the number of decoded chunks cached for reads
	// (default DefaultCacheChunks); CacheBytes bounds their size (default
	// DefaultCacheBytes; the chunk last read is kept whatever its size).
	CacheChunks int
	CacheBytes  int
	// Files bounds the open files (nil: a cache of this log's own, of
	// DefaultMaxOpenFiles).
	Files *Files
	// Identity is written into the header of every segment file the log
	// creates (package store writes the queue's identity there, so that an
	// index can be rebuilt from the segments). Opaque to this package.
	Identity []byte
	// NextSeq is the sequence to start from when the log holds no record
	// (its files were all reclaimed); 0 means 1.
	NextSeq uint64
	// Guard, if set, is asked before the log takes records, creates a file
	// or writes a chunk; an error refuses the append (wrapping ErrFailing)
	// or fails the write as the file system would (the store keeps logs
	// off the space it reserves for its index when the disk is full).
	Guard func() error
	// WantFlush, if set, is called (without locks held) when the log holds
	// records it cannot write until a flush creates its next file: the
	// store passes them to the Syncer.
	WantFlush func(*Log)
	// Logger receives recovery reports.
	Logger zerolog.Logger
	// Sync enables fsync. False for transient queues: never fsync.
	Sync bool
}

// Gap is a range of sequences lost to corruption.
type Gap struct {
	// First and Last are the lost sequences, inclusive.
	First, Last uint64
	// File and Offset locate the corrupt bytes; Bytes is their length.
	File   string
	Offset int64
	Bytes  int64
}

// Truncation reports a torn tail cut off the last segment on open.
type Truncation struct {
	// File is the segment and Broken the copy kept of the bytes cut off
	// (empty when it could not be written).
	File, Broken string
	// Offset is where the file was cut and Bytes how many bytes were dropped.
	Offset, Bytes int64
	// Records counts the records of the torn chunk when its header was
	// readable (0 otherwise).
	Records uint32
}

// Recovery reports what Open found.
type Recovery struct {
	// Segments and Chunks count what was walked.
	Segments, Chunks int
	// Gaps lists sequence ranges lost inside the log.
	Gaps []Gap
	// Truncated lists torn tails that were cut off.
	Truncated []Truncation
	// Identity is the identity block of the newest segment that has one.
	Identity []byte
	// Deferred is set when a repair (truncating a torn tail, removing a
	// prepared file) could not be written: the log then fails writes until
	// a Syncer retry completes it.
	Deferred error
}
