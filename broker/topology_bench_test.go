package broker

import (
	"fmt"
	"os"
	"testing"

	"github.com/warrenmq/warren/amqpwire"
)

// BenchmarkDeclareBindDelete measures the RPC pattern's topology churn, a
// server-named exclusive queue declared, bound to amq.direct and deleted
// over AMQP, with many other queues (and a binding each) in the vhost. The
// cost should not grow with their number. WARREN_BENCH_QUEUES=100000 adds
// that size.
func BenchmarkDeclareBindDelete(b *testing.B) {
	sizes := []int{100, 10_000}
	if os.Getenv("WARREN_BENCH_QUEUES") == "100000" {
		sizes = append(sizes, 100_000)
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("queues=%d", n), func(b *testing.B) {
			tb := startBrokerConfig(&testing.T{}, Config{DataDir: b.TempDir()})
			defer tb.stop()
			vh := tb.srv.vhosts["/"]
			for i := 0; i < n; i++ {
				name := fmt.Sprintf("base-%d", i)
				if _, err := vh.declareQueue(nil, &amqpwire.QueueDeclare{Queue: name}, name); err != nil {
					b.Fatal(err)
				}
				if err := vh.bind(nil, "amq.direct", name, false, name, nil); err != nil {
					b.Fatal(err)
				}
			}
			tb.t = &testing.T{}
			conn := tb.dial()
			defer conn.Close()
			ch, err := conn.Channel()
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				q, err := ch.QueueDeclare("", false, true, true, false, nil)
				if err != nil {
					b.Fatal(err)
				}
				if err := ch.QueueBind(q.Name, q.Name, "amq.direct", false, nil); err != nil {
					b.Fatal(err)
				}
				if _, err := ch.QueueDelete(q.Name, false, false, false); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
