package bench

import (
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// ChurnResult reports the topology churn of a run (Config.Churn): cycles of
// queue.declare (server-named, exclusive), queue.bind to amq.direct and
// queue.delete, the RPC client's pattern.
type ChurnResult struct {
	// Workers is the number of churn connections.
	Workers int `json:"workers"`
	// Cycles counts completed declare-bind-delete cycles; Rate is cycles
	// per second over the run.
	Cycles uint64  `json:"cycles"`
	Rate   float64 `json:"cycles_per_second"`
	// Latency is the time of one whole cycle (three round trips), in ms.
	Latency Latency `json:"cycle_latency_ms"`
}

// churner declares, binds and deletes server-named queues on its own
// connection.
type churner struct {
	*client
	id     int
	cycles atomic.Uint64
	mu     sync.Mutex
	hist   *Histogram
}

func newChurner(r *runner, k int) *churner {
	cfg := r.cfg
	return &churner{
		client: r.newClient(fmt.Sprintf("%s-churn-%d", cfg.ID, k), cfg.URIs[k%len(cfg.URIs)]),
		id:     k,
		hist:   NewHistogram(),
	}
}

func (c *churner) connect() error { return c.open() }

// loop runs cycles until the run stops or a call fails.
func (c *churner) loop() error {
	stop := c.r.stop
	for {
		select {
		case <-stop:
			return nil
		default:
		}
		t0 := time.Now()
		q, err := c.ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			return c.stopped("declare a server-named queue", err)
		}
		if err := c.ch.QueueBind(q.Name, q.Name, "amq.direct", false, nil); err != nil {
			return c.stopped("bind "+q.Name, err)
		}
		if _, err := c.ch.QueueDelete(q.Name, false, false, false); err != nil {
			return c.stopped("delete "+q.Name, err)
		}
		d := time.Since(t0)
		c.mu.Lock()
		c.hist.Record(d.Nanoseconds())
		c.mu.Unlock()
		c.cycles.Add(1)
	}
}

// churnResult sums the churn workers' cycles over elapsed seconds.
func (r *runner) churnResult(elapsed float64) *ChurnResult {
	res := &ChurnResult{Workers: len(r.churners)}
	h := NewHistogram()
	for _, c := range r.churners {
		res.Cycles += c.cycles.Load()
		c.mu.Lock()
		h.Merge(c.hist)
		c.mu.Unlock()
	}
	if elapsed > 0 {
		res.Rate = float64(res.Cycles) / elapsed
	}
	res.Latency = latencyOf(h)
	return res
}
