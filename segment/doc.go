// Package segment is Warren's per-queue append-only log: segment files of
// CRC'd, compressed chunks, read by sequence number, with tail repair on open,
// reclaiming of fully acknowledged segments and a group-commit Syncer.
//
// # Files
//
// A queue directory holds segment files named by the zero-padded decimal
// sequence of their first record, so that lexical order is numeric:
//
//	00000000000000000001.seg
//	00000000000000131073.seg
//	00000000000000262145.seg   <- active: the only one appended to
//
// A new segment is created as <name>.tmp, written, fsynced, renamed to its
// final name, then the directory is fsynced (write-fsync-rename-fsync dir).
// Stray .tmp files are deleted on open. Repair keeps a <name>.broken copy of a
// file before truncating it.
//
// # File header (24 bytes, little endian)
//
//	+--------+---------+-------+----------+---------------+----------+--------+
//	| magic  | version | flags | reserved | base sequence | reserved | CRC32C |
//	| "WSEG" |  u8 =1  |  u8   |   u16    |      u64      |   u32    |  u32   |
//	+--------+---------+-------+----------+---------------+----------+--------+
//	 0        4         5       6          8               16         20
//
// The CRC32C (Castagnoli) covers bytes [0, 20).
//
// # Chunk (40-byte header + payload)
//
//	+--------+--------+--------+---------+-------+-------+-----------+-------+---------+-----------+----------+
//	| magic  |  CRC   |  HCRC  | version | codec | flags | first seq | count | raw len | stored len| reserved |
//	| "WCHK" |  u32   |  u32   |   u8    |  u8   |  u16  |    u64    |  u32  |   u32   |    u32    |   u32    |
//	+--------+--------+--------+---------+-------+-------+-----------+-------+---------+-----------+----------+
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
// anything is allocated.
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
// # Reading unsealed records
//
// Records appended but not yet sealed into a chunk live in the log's pending
// buffer, already in the raw chunk encoding; Read serves them from there
// without sealing, so a consumer may read a message the moment it is
// appended.
//
// # Recovery
//
// Open walks every segment. The last segment (the one a crash can tear) is
// validated fully: headers and payload CRCs. Older segments were fsynced
// before the next was created, so only their chunk headers are walked (HCRC);
// their payload CRCs are checked when read, and a chunk failing there is
// reported as a gap from then on. A chunk that fails validation is skipped by
// scanning forward for the next valid chunk magic; the sequences in between
// become a Gap (Read returns ErrLost). An invalid tail of the last segment
// with no valid chunk after it is torn: the file is copied to <name>.broken,
// rewritten with its valid prefix (write-fsync-rename-fsync dir) and the loss
// is logged and reported in Recovery. Open fails only on I/O errors, never on
// corrupt data.
//
// # Durability
//
// Seal writes the pending records as one chunk with write(2); Sync fdatasyncs.
// The Syncer batches both across logs: each round seals and fdatasyncs every
// dirty log (several logs in parallel, so both cores compress), runs an
// optional hook (the store's index commit), then calls the
// waiters registered before the round began. While one round runs the next
// batch gathers, so under load chunks grow and compress better and at idle a
// lone append is synced at once.
package segment
