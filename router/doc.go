// Package router routes published messages to queues: the exchange types
// direct, fanout, topic and headers, bindings to queues and to exchanges,
// and alternate exchanges. It does no I/O and knows nothing of sockets or
// disk; queues are plain names.
//
// # Shape
//
//	broker (vhost lock held)                 publishing goroutines (no lock)
//	  |                                          |
//	  | DeclareExchange / DeleteExchange         | snap := topo.Current()
//	  | Bind / Unbind / RemoveQueue              | dst, ok = snap.Route(x, key, hdrs, dst[:0])
//	  v                                          v
//	Topology  --Snapshot()-->  atomic.Pointer[Snapshot]  --> immutable *Snapshot
//	(mutable: exchanges,        (publish)                    exchange name -> compiled
//	 bindings by source,                                     direct: key -> dests
//	 by destination)                                         fanout: dests
//	                                                         topic: word trie
//	                                                         headers: matchers
//
// A Topology per vhost is owned by the broker and changed under its lock.
// Snapshot recompiles only the exchanges whose bindings changed and swaps
// the published pointer; a *Snapshot never changes, so Route needs no lock.
//
// # Routing
//
// Snapshot.Route appends the unique, sorted queue names a message reaches,
// following exchange-to-exchange bindings and alternate exchanges the way
// RabbitMQ's rabbit_exchange:route does: the alternate exchange (the
// "alternate-exchange" argument) of an exchange is used when that
// exchange's own bindings match nothing at all, and each exchange is
// visited at most once per message, so cycles end. The default exchange ""
// is the broker's: Route returns the routing key itself as the queue name
// and the broker checks that the queue exists. Bindings from or to "" are
// refused (ErrDefaultExchange).
//
// Topic keys split at every '.', so "a..b" has an empty middle word, "" has
// no words, "*" needs exactly one (possibly empty) word and "#" matches any
// number including none (see topic.go). Headers matching follows RabbitMQ 4
// (see headers.go for x-match modes and value equality).
//
// Route does not allocate when dst has room, for direct, fanout and topic
// exchanges, which is what keeps the publish path allocation-free.
package router
