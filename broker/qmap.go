package broker

import (
	"hash/maphash"
	"sync/atomic"
)

// qmapShards is the number of shards of a vhost's queue map.
const qmapShards = 256

// queueMap is a vhost's queues by name as publishers see them: reads take
// no lock, and a change (under vhost.mu) copies only the shard of the
// changed name, so declaring or deleting a queue costs the same at 100,000
// queues as at 100 (a shard holds about 1/256 of them).
type queueMap struct {
	shards [qmapShards]atomic.Pointer[map[string]*queue]
}

var qmapSeed = maphash.MakeSeed()

func qmapShard(name string) int { return int(maphash.String(qmapSeed, name) % qmapShards) }

// get returns the named queue or nil.
func (m *queueMap) get(name string) *queue {
	p := m.shards[qmapShard(name)].Load()
	if p == nil {
		return nil
	}
	return (*p)[name]
}

// setLocked publishes q under name, or removes name when q is nil. Callers
// hold the vhost's lock, so there is one writer at a time.
func (m *queueMap) setLocked(name string, q *queue) {
	sh := &m.shards[qmapShard(name)]
	var old map[string]*queue
	if p := sh.Load(); p != nil {
		old = *p
	}
	next := make(map[string]*queue, len(old)+1)
	for k, v := range old {
		next[k] = v
	}
	if q == nil {
		delete(next, name)
	} else {
		next[name] = q
	}
	sh.Store(&next)
}

// all returns every queue, in no order.
func (m *queueMap) all() []*queue {
	var out []*queue
	for i := range m.shards {
		if p := m.shards[i].Load(); p != nil {
			for _, q := range *p {
				out = append(out, q)
			}
		}
	}
	return out
}

// replaceLocked publishes every queue of m at once (after recovery).
func (m *queueMap) replaceLocked(queues map[string]*queue) {
	var shards [qmapShards]map[string]*queue
	for name, q := range queues {
		i := qmapShard(name)
		if shards[i] == nil {
			shards[i] = make(map[string]*queue)
		}
		shards[i][name] = q
	}
	for i := range shards {
		if shards[i] == nil {
			m.shards[i].Store(nil)
		} else {
			m.shards[i].Store(&shards[i])
		}
	}
}
