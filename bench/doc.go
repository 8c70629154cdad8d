// Package bench is the load generator library behind cmd/warrenperf. It is an AMQP 0-9-1 client and works against any broker.
package bench
