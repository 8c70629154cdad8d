package broker

import (
	"os"
	"runtime/debug"
	"runtime/metrics"
)

// DefaultGCHeadroom is the default of Config.GCHeadroom.
const DefaultGCHeadroom = 128 << 20

// maxGCPercent bounds the GOGC that tuneGC sets for a tiny live heap.
const maxGCPercent = 1000

// gcTuner keeps the garbage collector from running every few megabytes
// allocated when the live heap is small. Go's default (GOGC=100) starts a
// collection when the heap has doubled: a broker with 20 MiB live that
// takes 1 MiB messages at 1 GB/s collects 50 times a second, and returns
// freed spans to the OS only to fault them in again. tuneGC sets GOGC so
// that a collection starts once headroom bytes of garbage have piled up,
// never less often than GOGC=100: a larger live heap keeps Go's default.
// An operator's own GOGC, or an active memory alarm, turns it off.
type gcTuner struct {
	headroom uint64
	percent  int // as last set; 0 before the first call
	sample   []metrics.Sample
	disabled bool
}

func newGCTuner(headroom int64) *gcTuner {
	t := &gcTuner{sample: []metrics.Sample{{Name: "/gc/heap/live:bytes"}}}
	switch {
	case headroom < 0 || os.Getenv("GOGC") != "":
		t.disabled = true
	case headroom == 0:
		t.headroom = DefaultGCHeadroom
	default:
		t.headroom = uint64(headroom)
	}
	return t
}

// tune sets GOGC from the live heap after the last collection; memLimit
// (the memory high watermark, 0 for none) caps the headroom at an eighth
// of it, and alarmed restores Go's default.
func (t *gcTuner) tune(memLimit uint64, alarmed bool) {
	if t.disabled {
		return
	}
	metrics.Read(t.sample)
	var live uint64
	if v := t.sample[0].Value; v.Kind() == metrics.KindUint64 {
		live = v.Uint64()
	}
	t.set(gcPercent(live, t.headroom, memLimit, alarmed))
}

func (t *gcTuner) set(p int) {
	if p != t.percent {
		debug.SetGCPercent(p)
		t.percent = p
	}
}

// gcPercent is the GOGC that lets headroom bytes of garbage pile up over a
// live heap of live bytes, within [100, maxGCPercent], rounded down to a
// multiple of 50 so that small changes of the live heap change nothing.
func gcPercent(live, headroom, memLimit uint64, alarmed bool) int {
	if memLimit > 0 {
		headroom = min(headroom, memLimit/8)
	}
	if alarmed || live == 0 || headroom <= live {
		return 100
	}
	p := min(headroom*100/live, maxGCPercent)
	return max(100, int(p/50*50))
}
