// Package store is the queue store the broker uses: one Queue per AMQP queue
// over a segment.Log, with its delivery state persisted in the index.
//
// # Layout
//
//	<Dir>/index/             Pebble (package index): definitions + log states
//	<Dir>/queues/<queue ID>/ segment files of one queue (package segment)
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
// All queues share one segment.Syncer. Each round seals and fdatasyncs the
// dirty logs and then calls the round's waiters: a publisher confirm waits
// for this fdatasync only, because recovery takes the log as the truth for
// which messages exist. After the round, the log state (watermark, acked
// ranges, highest delivered, segments) of every queue whose ack state
// changed is committed to the index in one batch, clipped to the records
// the log holds durably: the index never claims more than the segments.
// Without Options.SyncIndex the round's hook commits it unsynced; with it,
// a committer goroutine woken by the hook commits it synced, at most every
// 2 ms under load, without holding the round up. Acks and deliveries start
// a round themselves when none is pending, so ack state reaches Pebble in
// batches without a timer. Losing recent ack state to a crash only makes
// acked messages come back, flagged redelivered; it never loses one.
//
// # Recovery
//
// Open reads every log state (one prefix scan) and opens each durable
// queue's log, which walks segment and chunk headers: O(queues + segments
// + chunks), never a read of every message. The log is the truth: the
// watermark is raised to the log's first sequence (segments deleted after
// an unsynced index commit) and lowered to its end (records lost after a
// crash), acked ranges are clipped the same way, and
//
//	ready = next - watermark - acked above the watermark
//
// Messages unacked at the crash are ready again; those below the persisted
// highest-delivered mark are flagged redelivered. Non-persistent records of
// a durable queue written before the restart are counted as ready until
// NextReady reaches them, and are then dropped (acked) instead of delivered.
// Logs without index state belong to non-durable queues and are deleted.
//
// # Space
//
// Segments wholly below the watermark are deleted by Reclaim, which a
// background pass runs every Options.ReclaimInterval; it also rolls the
// active segment of a drained queue that saw no append since the previous
// pass, so a drained backlog gives its disk back.
package store
