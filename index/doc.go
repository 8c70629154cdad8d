// Package index is Warren's metadata store: the only package that opens a
// Pebble database. It holds the broker's definitions (vhosts, users,
// permissions, exchanges, queues, bindings, policies, runtime parameters)
// and, for every durable queue, the state of its message log (segments, next
// sequence, ack watermark, acked ranges above the watermark, highest sequence
// delivered).
//
// Definitions change rarely and are written one synced Pebble write at a
// time, each also appended (and fsynced first) to the definitions journal
// described below. Log state changes with every ack; the store gathers it in a Batch
// that the segment group-commit syncer commits after the fdatasync round of
// the segment data it describes, so the index never claims more than the
// segments hold.
//
// # Keys
//
// Every key starts with one kind byte. Names follow as escaped strings so that
// names may hold any byte and a prefix scan over one vhost never sees another:
// each 0x00 byte of the name is written as 0x00 0xFF and the name ends with
// 0x00 0x01. The escaping preserves byte order, and no escaped name is a prefix
// of another escaped name ("a" -> 61 00 01, "a\x00" -> 61 00 FF 00 01,
// "ab" -> 61 62 00 01).
//
//	kind  key                                                  value
//	 'M'  'M' "format"                                         version byte (formatVersion)
//	 'V'  'V' esc(vhost)                                       vhost
//	 'U'  'U' esc(user)                                        user
//	 'P'  'P' esc(user) esc(vhost)                             permission
//	 'E'  'E' esc(vhost) esc(exchange)                         exchange
//	 'Q'  'Q' esc(vhost) esc(queue)                            queue
//	 'B'  'B' esc(vhost) esc(source) kind esc(destination)     binding
//	          esc(routing key) esc(arguments)
//	 'L'  'L' esc(queue ID)                                    log state
//	 'Y'  'Y' esc(vhost) esc(policy)                           policy
//	 'R'  'R' esc(component) esc(vhost) esc(name)              runtime parameter
//	 'G'  'G' esc(name)                                        global parameter
//	 'C'  'C' esc(queue ID) be64(seq)                          delivery counts
//	 'O'  'O' esc(vhost) esc(policy)                           operator policy
//	 'D'  'D' esc(queue ID)                                    delivery lease (lease.go)
//
// The binding's destination kind byte is 'q' (queue) or 'x' (exchange). A
// binding is identified by all of its fields, arguments included, as in
// RabbitMQ, so its whole identity lives in the key.
//
// # Values
//
// Every value starts with a version byte (currently 1). Integers are unsigned
// varints (encoding/binary), strings and byte strings are a varint length
// followed by the bytes, booleans are packed into one flags byte.
//
//	vhost       version 1 (no metadata), or version 2, string(description),
//	            varint(n), n x string(tag), string(default queue type)
//	user        version, algorithm byte, bytes(hash), varint(n), n x string(tag)
//	permission  version, string(configure), string(write), string(read)
//	exchange    version, string(type), flags(durable=1 auto-delete=2 internal=4), bytes(arguments)
//	queue       version, string(id), flags(durable=1 exclusive=2 auto-delete=4), bytes(arguments)
//	binding     version
//	policy      version, string(pattern), string(apply-to), varint(priority, signed),
//	            bytes(definition JSON)   (policies and operator policies)
//	parameter   version, bytes(value JSON)   (runtime and global parameters)
//	counts      version, varint(acquired), varint(failed)   (quorum queues)
//	log state   version, varint(next seq), varint(watermark), varint(delivered),
//	            varint(n), n x varint(segment base delta from previous base),
//	            varint(m), m x (varint(lo - previous hi), varint(hi - lo))
//	            version 2 (when the queue holds message bytes) adds, at the end,
//	            varint(body bytes of the messages not acked)
//
// Arguments are opaque to this package: the broker stores an encoded AMQP
// field table.
//
// The kind bytes, the escaping and the value layouts are part of the format,
// do not change them; add a new kind byte or a new value version instead.
//
// # Definitions journal
//
// Options.Journal names a file outside the index directory (the store uses
// <data dir>/definitions.journal) that records every definition write (the
// kinds V U P E Q B Y R G; not the log states, which the segments rebuild)
// as the key/value operation applied to Pebble:
//
//	file    := "WDEFJRNL" version:u8 (= 1) reserved:u8[7]  record*
//	record  := length:u32 crc32c(payload):u32 payload
//	payload := op:u8 uvarint(len) key uvarint(len) value
//
// op is 'S' (set), 'D' (delete) or 'R' (delete the keys in [key, value)).
// A record is appended and fsynced before the Pebble write; a failed append
// fails the write. When the journal has doubled since it was last written
// whole, it is rewritten as a snapshot of the current definitions (.tmp,
// fsync, rename, fsync the directory). Open cuts a torn last record.
// Rebuild creates a new index from the journal when the index is lost or
// damaged; the store then rebuilds log states from the segments.
//
// # Failing disks
//
// Open with ReadOnly serves reads when the disk cannot be written; Reopen
// tries to make it writable again. Options.Guard, asked before every
// definition write, lets the store refuse them on a full disk while the log
// state commits (a Batch without definitions) still go.
package index
