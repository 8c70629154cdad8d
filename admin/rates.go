package admin

import (
	"sync"
	"time"

	"github.com/warrenmq/warren/broker"
)

// sampler turns the broker's exact, cumulative counters into rates: every
// interval it keeps the counters it reads, and a rate is the difference
// between the last two samples over their distance in time.
type sampler struct {
	b Broker

	mu        sync.Mutex
	prev, cur sample
	havePrev  bool
	hist      history
}

type queueKey struct{ vhost, name string }

type queueSample struct {
	stats          broker.QueueStats
	ready, unacked int
}

type sample struct {
	at             time.Time
	totals         broker.Totals
	queues         map[queueKey]queueSample
	conns          map[string][2]uint64 // recv, send octets
	ready, unacked int
}

func newSampler(b Broker) *sampler { return &sampler{b: b} }

func (s *sampler) sample(now time.Time) {
	smp := sample{at: now, totals: s.b.Totals(), queues: map[queueKey]queueSample{}, conns: map[string][2]uint64{}}
	qs, err := s.b.Queues("")
	if err == nil {
		for _, q := range qs {
			smp.queues[queueKey{q.VHost, q.Name}] = queueSample{stats: q.Stats, ready: q.Ready, unacked: q.Unacked}
			smp.ready += q.Ready
			smp.unacked += q.Unacked
		}
	}
	for _, c := range s.b.Connections() {
		smp.conns[c.Name] = [2]uint64{c.RecvOct, c.SendOct}
	}
	st := s.b.StorageStats()
	s.mu.Lock()
	s.prev, s.cur = s.cur, smp
	s.havePrev = !s.prev.at.IsZero()
	s.hist.record(histPoint{at: now, totals: smp.totals, ready: smp.ready, unacked: smp.unacked, storage: st}, qs)
	s.mu.Unlock()
}

// withHistory calls f with the sample history, under the sampler's lock.
func (s *sampler) withHistory(f func(h *history)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(&s.hist)
}

// rates gives per-second rates between the last two samples.
type rates struct {
	dt        float64
	prev, cur sample
	ok        bool
}

func (s *sampler) snapshot() rates {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := rates{prev: s.prev, cur: s.cur, ok: s.havePrev}
	if r.ok {
		r.dt = s.cur.at.Sub(s.prev.at).Seconds()
		r.ok = r.dt > 0
	}
	return r
}

func (r *rates) rate(cur, prev uint64) float64 {
	if !r.ok || cur < prev {
		return 0
	}
	return round1(float64(cur-prev) / r.dt)
}

func (r *rates) rateInt(cur, prev int) float64 {
	if !r.ok {
		return 0
	}
	return round1(float64(cur-prev) / r.dt)
}

func round1(f float64) float64 { return float64(int64(f*10+0.5*sign(f))) / 10 }

func sign(f float64) float64 {
	if f < 0 {
		return -1
	}
	return 1
}

func details(rate float64) map[string]any { return map[string]any{"rate": rate} }

// queueMessageStats renders a queue's message_stats: exact counts with the
// sampled rates.
func (r *rates) queueMessageStats(q broker.QueueInfo) map[string]any {
	p := r.prev.queues[queueKey{q.VHost, q.Name}].stats
	c := q.Stats
	if cs, ok := r.cur.queues[queueKey{q.VHost, q.Name}]; ok {
		c = cs.stats // rates between samples; counts stay exact below
	}
	out := map[string]any{}
	add := func(name string, count, cur, prev uint64) {
		out[name] = count
		out[name+"_details"] = details(r.rate(cur, prev))
	}
	s := q.Stats
	add("publish", s.Published, c.Published, p.Published)
	add("deliver", s.DeliveredAck, c.DeliveredAck, p.DeliveredAck)
	add("deliver_no_ack", s.DeliveredNoAck, c.DeliveredNoAck, p.DeliveredNoAck)
	add("get", s.GetAck, c.GetAck, p.GetAck)
	add("get_no_ack", s.GetNoAck, c.GetNoAck, p.GetNoAck)
	dg := func(x broker.QueueStats) uint64 { return x.DeliveredAck + x.DeliveredNoAck + x.GetAck + x.GetNoAck }
	add("deliver_get", dg(s), dg(c), dg(p))
	add("redeliver", s.Redelivered, c.Redelivered, p.Redelivered)
	add("ack", s.Acked, c.Acked, p.Acked)
	return out
}

// totalsMessageStats renders the overview's message_stats.
func (r *rates) totalsMessageStats(t broker.Totals) map[string]any {
	c, p := r.cur.totals, r.prev.totals
	out := map[string]any{}
	add := func(name string, count uint64, f func(broker.Totals) uint64) {
		out[name] = count
		out[name+"_details"] = details(r.rate(f(c), f(p)))
	}
	add("publish", t.Received, func(x broker.Totals) uint64 { return x.Received })
	add("confirm", t.Confirmed, func(x broker.Totals) uint64 { return x.Confirmed })
	add("return_unroutable", t.UnroutableReturned, func(x broker.Totals) uint64 { return x.UnroutableReturned })
	add("drop_unroutable", t.UnroutableDropped, func(x broker.Totals) uint64 { return x.UnroutableDropped })
	add("deliver", t.DeliveredAck, func(x broker.Totals) uint64 { return x.DeliveredAck })
	add("deliver_no_ack", t.DeliveredNoAck, func(x broker.Totals) uint64 { return x.DeliveredNoAck })
	add("get", t.GetAck, func(x broker.Totals) uint64 { return x.GetAck })
	add("get_no_ack", t.GetNoAck, func(x broker.Totals) uint64 { return x.GetNoAck })
	add("get_empty", t.GetEmpty, func(x broker.Totals) uint64 { return x.GetEmpty })
	dg := func(x broker.Totals) uint64 { return x.DeliveredAck + x.DeliveredNoAck + x.GetAck + x.GetNoAck }
	add("deliver_get", dg(t), dg)
	add("redeliver", t.Redelivered, func(x broker.Totals) uint64 { return x.Redelivered })
	add("ack", t.Acked, func(x broker.Totals) uint64 { return x.Acked })
	return out
}
