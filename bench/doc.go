// Package bench is the load generator behind cmd/warrenperf, in the spirit
// of RabbitMQ's PerfTest. It is a plain AMQP 0-9-1 client and works against
// any broker, Warren or RabbitMQ. Of Warren it imports only amqpwire, the
// pure protocol codec.
//
// A run is described by a Config (built from DefaultConfig, BindFlags or
// ApplyOptions) and executed by Run:
//
//	            +-----------+     exchange / queues     +-----------+
//	producers ->| conn + ch |---> (declared by Run) --->| conn + ch |-> consumers
//	 (-x, one   +-----------+                           +-----------+   (-y, one
//	 goroutine                                                           goroutine
//	 each)            body: publish time | producer id | sequence        each)
//	                                                         |
//	                               latency = deliver - publish time
//	                               -> per-consumer Histogram, merged
//	                                  once a second by the reporter
//
// Each producer and consumer has its own connection and one goroutine;
// bodies are stamped in place and reused, confirms are tracked with a window
// per producer, and a fixed rate is paced by a token bucket, so the client
// costs little per message and measures the broker rather than itself.
//
// Two client engines drive the producers and consumers (Config.Client,
// --client); topology is always declared through amqp091-go:
//
//   - amqp091 (default): github.com/rabbitmq/amqp091-go, one write system
//     call per publish and per ack, with its locks, selects and allocations.
//   - fast: raw connections encoded with amqpwire. Publishes are encoded in
//     place into a 64 KiB write buffer flushed when the confirm window is
//     full, before the pacer sleeps or every 256 publishes; one reader
//     goroutine per producer settles confirms (multiple included) and frees
//     window credit once per ack frame; consumers parse deliveries in a
//     reused frame buffer and flush their buffered acks once per batch of
//     frames read. The hot path does not allocate. Counting, progress and
//     results are the same as with amqp091, so runs compare directly.
//
// The scale dimensions have options of their own: ChannelsPerConnection
// puts many producers or consumers on one connection (10,000 queues with a
// publisher each on 100 connections); ExclusiveQueues makes every consumer
// an RPC client with a server-named exclusive queue; Churn times cycles of
// declare, bind and delete of such queues beside any number of background
// queues (declared without waiting past a thousand). With BrokerPID (and
// BrokerDir) a run reads the broker's resident memory, open files, CPU time
// and data directory size from /proc before it, once connected, at the end
// and after Settle idle seconds, so memory per connection or per idle queue
// comes out of the same run for Warren and for RabbitMQ (the beam.smp
// process). scenarios/scale.json and scenarios/extensions.json hold those
// suites.
//
// Compare runs the scenarios of a scenario file (see LoadScenarios and
// scenarios/standard.json) against two brokers alternately and summarises
// the median rate and p99 latency of each; WriteCompareSVG plots them.
package bench
