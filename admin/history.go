package admin

import (
	"math"
	"strconv"
	"time"

	"github.com/warrenmq/warren/broker"
	"github.com/warrenmq/warren/segment"
	"github.com/warrenmq/warren/store"
)

// historyLen is how many samples the sampler keeps: ten minutes at the
// default interval of 5 s. The node's history holds the counters and the
// storage figures; each queue's holds only its depth (ready and unacked,
// 8 bytes a sample, under 1 KiB a queue).
const historyLen = 120

// maxQueueHistory bounds the queues whose depth history is kept (about
// 20 MiB at most). A queue gets a history when it first holds messages and
// loses it after a whole window empty, so idle queues cost nothing; past
// the bound, further queues go without one until others drop out.
const maxQueueHistory = 20_000

// histPoint is the node at one sample.
type histPoint struct {
	at             time.Time
	totals         broker.Totals
	ready, unacked int
	storage        store.Stats
	// syncMean and syncP99 describe the sync rounds that ended between the
	// previous sample and this one (seconds; 0 when none ran).
	syncMean, syncP99 float64
	syncRounds        uint64 // rounds finished in that interval
}

// queueHist is one queue's depth history, indexed like history.node.
type queueHist struct {
	first   uint64 // sequence number of the first sample kept
	nonzero uint64 // sequence number of the last sample with messages
	depth   [historyLen][2]uint32
}

// history is the ring of the last historyLen samples.
type history struct {
	seq    uint64 // samples taken; sample n lives at n % historyLen
	node   [historyLen]histPoint
	queues map[queueKey]*queueHist
}

// record adds one sample. qs are the queues seen in it.
func (h *history) record(p histPoint, qs []broker.QueueInfo) {
	if h.queues == nil {
		h.queues = map[queueKey]*queueHist{}
	}
	n := h.seq
	if n > 0 {
		prev := &h.node[(n-1)%historyLen]
		p.syncMean, p.syncP99, p.syncRounds = syncInterval(prev.storage.Sync, p.storage.Sync)
	}
	h.node[n%historyLen] = p
	seen := make(map[queueKey]bool, len(h.queues))
	for _, q := range qs {
		k := queueKey{q.VHost, q.Name}
		qh := h.queues[k]
		empty := q.Ready == 0 && q.Unacked == 0
		if qh == nil {
			if empty || len(h.queues) >= maxQueueHistory {
				continue
			}
			qh = &queueHist{first: n}
			h.queues[k] = qh
		}
		seen[k] = true
		qh.depth[n%historyLen] = [2]uint32{sat32(q.Ready), sat32(q.Unacked)}
		if !empty {
			qh.nonzero = n
		}
	}
	for k, qh := range h.queues {
		if !seen[k] || n-qh.nonzero >= historyLen {
			delete(h.queues, k)
		}
	}
	h.seq++
}

func sat32(n int) uint32 {
	if n < 0 {
		return 0
	}
	if n > math.MaxUint32 {
		return math.MaxUint32
	}
	return uint32(n)
}

// syncInterval gives the mean and the 99th percentile (interpolated within
// its histogram bucket, as Prometheus' histogram_quantile does) of the sync
// rounds that finished between two readings of the syncer's statistics.
func syncInterval(prev, cur segment.SyncStats) (mean, p99 float64, rounds uint64) {
	counts := make([]uint64, len(cur.Counts))
	for i, c := range cur.Counts {
		if i < len(prev.Counts) && prev.Counts[i] <= c {
			c -= prev.Counts[i]
		}
		counts[i] = c
		rounds += c
	}
	if rounds == 0 {
		return 0, 0, 0
	}
	mean = max(cur.Seconds-prev.Seconds, 0) / float64(rounds)
	rank := 0.99 * float64(rounds)
	var cum float64
	for i, c := range counts {
		lo := 0.0
		if i > 0 && i-1 < len(segment.SyncBuckets) {
			lo = segment.SyncBuckets[i-1]
		}
		if i >= len(segment.SyncBuckets) { // above the last bound
			return mean, lo, rounds
		}
		if cum+float64(c) >= rank && c > 0 {
			hi := segment.SyncBuckets[i]
			return mean, lo + (hi-lo)*(rank-cum)/float64(c), rounds
		}
		cum += float64(c)
	}
	return mean, 0, rounds
}

// window is a request's choice of samples: RabbitMQ's *_age and *_incr
// query parameters, in seconds.
type window struct {
	age, incr time.Duration
}

// windowParam reads <prefix>_age and <prefix>_incr; ok is false when the
// request asked for no samples.
func (req *request) windowParam(prefix string) (window, bool) {
	q := req.r.URL.Query()
	age, err := strconv.Atoi(q.Get(prefix + "_age"))
	if err != nil || age <= 0 {
		return window{}, false
	}
	incr, err := strconv.Atoi(q.Get(prefix + "_incr"))
	if err != nil || incr <= 0 {
		incr = 5
	}
	return window{time.Duration(age) * time.Second, time.Duration(incr) * time.Second}, true
}

// pick calls f with the slots of the samples inside w, newest first, at
// least w.incr apart.
func (h *history) pick(w window, first uint64, f func(slot int, at time.Time)) {
	if h.seq == 0 {
		return
	}
	newest := h.node[(h.seq-1)%historyLen].at
	var last time.Time
	for n := h.seq; n > 0 && h.seq-n < historyLen; n-- {
		s := n - 1
		if s < first {
			break
		}
		p := &h.node[s%historyLen]
		if newest.Sub(p.at) > w.age {
			break
		}
		if !last.IsZero() && last.Sub(p.at) < w.incr-w.incr/10 {
			continue
		}
		last = p.at
		f(int(s%historyLen), p.at)
	}
}

// samples renders one series in RabbitMQ's shape: newest first,
// [{"sample": v, "timestamp": ms}].
func samples[T any](h *history, w window, first uint64, v func(slot int) T) []map[string]any {
	out := []map[string]any{}
	h.pick(w, first, func(slot int, at time.Time) {
		out = append(out, map[string]any{"sample": v(slot), "timestamp": at.UnixMilli()})
	})
	return out
}
