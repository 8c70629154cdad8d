package segment

import (
	"errors"
	"fmt"

	"github.com/rs/zerolog"
)

// Format constants: part of the format, do not change.
const (
	fileMagic       = "WSEG"
	fileVersion     = 1
	fileHeaderSize  = 24
	chunkMagic      = "WCHK"
	chunkVersion    = 1
	chunkHeaderSize = 40
	segmentSuffix   = ".seg"
	seqDigits       = 20

	// MaxChunkSize bounds the raw (decoded) length of one chunk, and so the
	// encoded size of one record. Part of the format, do not change.
	MaxChunkSize = 64 << 20
)

// Non-format defaults.
const (
	// DefaultSegmentSize is the size at which the active segment is rolled.
	DefaultSegmentSize = 64 << 20
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
)

// Options configures a Log.
type Options struct {
	// SegmentSize is the size at which the active segment is rolled
	// (default DefaultSegmentSize).
	SegmentSize int64
	// ChunkSize is the raw pending size at which Append seals a chunk by
	// itself (default DefaultChunkSize, at most MaxChunkSize).
	ChunkSize int
	// Codec compresses chunk payloads (default CodecS2).
	Codec Codec
	// CacheChunks is the number of decoded chunks cached for reads
	// (default DefaultCacheChunks).
	CacheChunks int
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
	// File is the segment and Broken the copy kept of it before the cut.
	File, Broken string
	// Offset is where the file was cut and Bytes how many bytes were dropped.
	Offset, Bytes int64
}

// Recovery reports what Open found.
type Recovery struct {
	// Segments and Chunks count what was walked.
	Segments, Chunks int
	// Gaps lists sequence ranges lost inside the log.
	Gaps []Gap
	// Truncated lists torn tails that were cut off.
	Truncated []Truncation
}
