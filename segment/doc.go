// Package segment is Warren's per-queue append-only log: segment files of
// CRC'd, compressed chunks, read by sequence number, with tail repair on open,
// reclaiming of fully acknowledged segments, a group-commit Syncer, and a
// bound on the files held open.
//
// # Files
//
// A queue directory holds segment files named by the zero-padded decimal
// sequence of their first record, so that lexical order is numeric:
//
//	00000000000000000001.seg
//	00000000000000131073.seg
//	00000000000000262145.seg   <- active: the only one appended to
//	next-3.tmp                 <- prepared: the next active segment
//
// A log with nothing to hold has no file and no directory: the directory
// and the first segment are created when records are first written, and
// RemoveBelow deletes the active segment too (and the directory) once every
// record in it is acknowledged.
//
// Files are never created, renamed or fsynced under the log's mutex. The
// next segment file is prepared ahead of time, off the append path, by a
// flush (a Syncer round): created as next-<n>.tmp (its directory made and
// the parent synced first if needed). A roll, under the mutex, only writes
// the prepared file's header (pwrite) and makes it the active segment. The
// next flush renames it to its final name and fsyncs the directory before
// its records count as durable, after fdatasyncing the segment before it.
// A .tmp file found on open never held a durable record and is removed.
//
// Segments are sized to the backlog: a new segment's target is twice the
// bytes the log's live segments hold, between Options.MinSegmentSize
// (512 KiB) and SegmentSize (64 MiB). A near-empty queue writes small
// segments that go as soon as they are acked; a long backlog uses few
// large files.
//
// # Open files
//
// All logs of a store share one Files cache: a segment's file is opened
// when a read, write or fdatasync needs it and closed, least recently used
// first, when more than the bound (--max-open-files) are open. A file is
// pinned only while an operation on it runs.
//
// # File header (version 2: 24 bytes + identity block)
//
//	+--------+---------+-------+----------+---------------+----------+--------+
//	| magic  | version | flags | reserved | base sequence | reserved | CRC32C |
//	| "WSEG" |  u8 =2  |  u8   |   u16    |      u64      |   u32    |  u32   |
//	+--------+---------+-------+----------+---------------+----------+--------+
//	 0        4         5       6          8               16         20
//	+--------------+-----------------+------------------------------+
//	| identity len | identity bytes  | CRC32C of len and identity   |
//	|     u32      |  len bytes      |             u32              |
//	+--------------+-----------------+------------------------------+
//	 24             28                28 + len
//
// The first CRC32C (Castagnoli) covers bytes [0, 20). The identity block is
// opaque here (Options.Identity): package store writes the queue's
// identity (vhost, name, ID, durability, arguments), so that an index can be
// rebuilt from the segments. Chunks start after it. Version 1 files (the
// 24 bytes alone) are still read; a file with a damaged header keeps its
// readable chunks but is not written to again.
//
// # Chunk (40-byte header + payload)
//
//	+--------+--------+--------+---------+-------+-------+-----------+-------+---------+-----------+-----------+
//	| magic  |  CRC   |  HCRC  | version | codec | flags | first seq | count | raw len | stored len| transient |
//	| "WCHK" |  u32   |  u32   |   u8    |  u8   |  u16  |    u64    |  u32  |   u32   |    u32    |    u32    |
//	+--------+--------+--------+---------+-------+-------+-----------+-------+---------+-----------+-----------+
//	 0        4        8        12        13      14      16          24      28        32          36
//	+----------------------------------------------+
//	| payload: stored len bytes, compressed with   |
//	| codec, raw len bytes once decoded            |
//	+----------------------------------------------+
//
// CRC is CRC32C over header bytes [12, 40) followed by the payload; HCRC is
// CRC32C over header bytes [12, 40) alone, so that Open can walk chunk headers
// of older segments without reading their payloads. Both are checked when a
// chunk is read. Raw length is at most MaxChunkSize and stored length at most
// raw length (a block that compression does not shrink by at least 1/8 is
// stored raw, codec none), so every length read from disk is bounded before
// anything is allocated. Transient (version 2) counts the chunk's records
// without FlagPersistent, so that recovery can count the messages that
// survive a restart from the headers alone; in version 1 chunks, still
// read, those bytes are zero and mean nothing.
//
// The raw payload is the chunk's records back to back; record i has sequence
// first seq + i:
//
//	uvarint  n          length of the rest of the record
//	varint   timestamp  record 0: absolute (unix nanoseconds, zigzag);
//	                    others: delta from record 0
//	u8       flags      FlagPersistent, ...
//	uvarint  len, bytes exchange
//	uvarint  len, bytes routing key
//	uvarint  len, bytes properties (AMQP content-header property bytes)
//	uvarint  len, bytes body
//
// # Records in memory
//
// Appended records wait in pending pieces, already in the chunk encoding,
// until a seal writes them (Read serves them from there). A record with
// Owned set and a body of at least LargeBody bytes is a piece of its own
// that references the caller's buffer instead of copying it: it is written
// as one chunk (header and record prefix, then the body, each with one
// pwrite), and compressed only if a 32 KiB sample compresses. Written
// pieces stay in memory until fdatasynced (to be written again if the sync
// fails), then join the decoded-chunk cache (at most CacheChunks and
// CacheBytes), so consumers that keep up never decode. ReleaseIdle drops
// the cache and buffers of a log unused since its previous call. A log
// without Sync (a non-durable queue) writes only full chunks: a transient
// queue whose consumers keep up never writes, and Discard drops the acked
// records it holds.
//
// # Recovery
//
// Open walks every segment. The last segment (the one a crash can tear) is
// validated fully: headers and payload CRCs. Older segments were fsynced
// before the next was renamed into place, so only their chunk headers are
// walked (HCRC); their payload CRCs are checked when read, and a chunk
// failing there is reported as a gap from then on. A chunk that fails
// validation is skipped by scanning forward for the next valid chunk magic;
// the sequences in between become a Gap (Read returns ErrLost). Sequences
// missing between two segments (a deleted file) are a Gap too. Every loss
// is logged at error level with its count.
//
// An invalid tail of the last segment with no valid chunk after it is torn:
// its bytes are saved to <name>.broken (only those bytes, never a copy of
// the segment), then the file is truncated in place (ftruncate) and
// fdatasynced; a tail of zeroes is unwritten space and is cut without a
// report. Nothing is copied, so a repair works on a full disk; if even the
// cut fails, the log opens failing writes and a Syncer retry completes it.
// Open fails only on I/O errors reading the log, never on corrupt data.
//
// # Durability and failures
//
// Seal writes pending records as chunks with pwrite; Sync fdatasyncs. The
// Syncer batches both across logs: each round flushes every dirty log
// (prepare a file if needed, seal, rename prepared files, fdatasync) with
// at most Options.Workers goroutines, runs an optional hook (the store's
// index commit), then calls the waiters registered before the round began.
// While one round runs the next batch gathers, so under load chunks grow and
// compress better and at idle a lone append is synced at once.
//
// A failed write, creation or fdatasync puts the log in the failing state:
// Append returns ErrFailing (wrapping the cause, e.g. ENOSPC), so no record
// is accepted that could not be kept; records accepted before stay in
// memory and their waiters wait. The Syncer retries the log with a backoff
// (50 ms to 2 s): it truncates each segment back to its durable size (after
// a failed fdatasync nothing past it can be trusted), writes the records
// again and syncs; when that succeeds the waiters are called and appends
// are accepted again. Waiters are failed only if the Syncer closes while
// the log still fails.
package segment
