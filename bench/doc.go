// Package bench is the load generator behind cmd/warrenperf, in the spirit
// of RabbitMQ's PerfTest. It is a plain AMQP 0-9-1 client
// (github.com/rabbitmq/amqp091-go) and works against any broker, Warren or
// RabbitMQ; it imports no other Warren package.
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
// Compare runs the scenarios of a scenario file (see LoadScenarios and
// scenarios/standard.json) against two brokers alternately and summarises
// the median rate and p99 latency of each; WriteCompareSVG plots them.
package bench
