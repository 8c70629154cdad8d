// Package router routes published messages to queues: exchange types (direct, fanout, topic, headers), bindings including exchange-to-exchange, and alternate exchanges, held in immutable snapshots swapped atomically so publishes route without locks.
package router
