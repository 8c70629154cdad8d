// Package store is the queue store the broker uses: one Queue per AMQP queue
// over a segment.Log, with its delivery state persisted in the index.
//
// # Layout
//
//	<Dir>/index/                Pebble (package index): definitions + log states
//	<Dir>/definitions.journal   every definition change, to rebuild the index
//	<Dir>/queues/<queue ID>/    segment files of a durable queue (package segment)
//	<Dir>/transient/<queue ID>/ spilled records of a non-durable queue
//	<Dir>/ballast               space kept for the index against a full disk
//
// Every segment file carries the queue's identity in its header
// (encodeIdentity: ID, vhost, name, durability, arguments). A durable
// queue's definition and initial log state are written in one synced batch
// when it is created; its directory appears with its first record and goes
// when its last segment is reclaimed. A non-durable queue lives under
// transient/, which Open deletes whole (logged): it keeps its records in
// memory until a chunk's worth is waiting, so a small one writes nothing.
// Deleting a queue renames its directory to <id>.deleted before its state
// goes; Open removes such directories.
//
// # Delivery state
//
// Sequences of a queue's log run from 1. In RAM a Queue keeps only
//
//	watermark  every sequence below is acked
//	acked      sorted ranges of acked sequences above the watermark
//	cursor     first sequence never handed out since open
//	requeued   sorted sequences given back by Requeue
//
// so memory is bounded by in-flight work: the backlog [cursor, next) stays
// on disk and NextReady reads it through the log's decoded-chunk cache.
//
//	ready   = (next - cursor) - acked in [cursor, next) + len(requeued)
//	unacked = handed out, not acked, not requeued
//
// # Durability
//
// All queues share one segment.Syncer. Each round flushes the dirty logs
// and then calls the round's waiters: a publisher confirm waits for this
// fdatasync only, because recovery takes the log as the truth for which
// messages exist. After the round, the log state (watermark, acked ranges,
// highest delivered, segments) of every queue whose ack state changed is
// committed to the index in one batch, clipped to the records the log holds
// durably: the index never claims more than the segments. Without
// Options.SyncIndex the round's hook commits it unsynced; with it, a
// committer goroutine woken by the hook commits it synced, at most every
// CommitInterval (2 ms) under load, without holding the round up. Losing
// recent ack state to a crash only makes acked messages come back, flagged
// redelivered; it never loses one.
//
// # Full and failing disks
//
// A log whose write fails refuses appends (the broker nacks them) and keeps
// what it accepted, which the Syncer writes again when the disk allows; the
// queue resumes by itself. Pebble treats a failed WAL write as fatal, so the
// index writes through a file system that, on ENOSPC, deletes the ballast
// file and retries: the index keeps working on a full disk, while logs and
// definitions fail writes until the disk has room for the ballast again
// (checked every ReclaimInterval). If the index cannot be opened for
// writing at all, it is opened read-only and reopened later. Failing and
// DiskFree let an alarm ask whether writes fail and how much space is
// left.
//
// # Recovery
//
// Open reads every log state (one prefix scan) and opens each durable
// queue's log, which walks segment and chunk headers: O(queues + segments
// + chunks), never a read of every message (chunks mixing persistent and
// non-persistent records are read to count them). The log is the truth:
// the watermark is raised to the log's first sequence and lowered to its
// end, acked ranges are clipped the same way, and
//
//	ready = persistent records above the watermark, not acked, not lost
//
// Segments are deleted only below a watermark committed to the index, so a
// log that starts above its committed watermark lost files, and one that
// ends below the index's durable end lost its tail: both, and corrupt
// chunks and torn tails, are logged at error level with the number of
// messages lost. Messages unacked at the crash are ready again; those below
// the persisted highest-delivered mark are flagged redelivered.
// Non-persistent records of a durable queue are not counted and are dropped
// (acked) when reached.
//
// Open refuses (ErrNeedsRepair) a data directory whose index is missing or
// unreadable while queue logs or a journal exist, or whose index has no
// state for a log holding messages, instead of ignoring or deleting data.
// With Options.Repair (warren --repair) it moves a damaged index aside
// (index.broken-<time>), rebuilds the definitions from the journal, and for
// every log without state rebuilds the state from the segments (nothing
// acked, everything flagged redelivered) and, if the index lacks it, the
// queue's definition from the segments' identity. Empty logs without state
// (a declaration that did not complete) are removed with a log line.
//
// # Space
//
// Reclaim, run every ReclaimInterval, deletes the segments wholly below the
// watermark, the active one too once everything written is acked, so a
// drained queue holds no file. Segments start at 512 KiB and grow with the
// backlog, so busy near-empty queues hold a few small files each.
package store
