package store

import (
	"slices"
	"sort"

	"github.com/warrenmq/warren/index"
)

// ackSet is a queue's acknowledgement state: every sequence below watermark
// is acked, and ranges lists the acked sequences above it as sorted,
// non-overlapping, non-adjacent half-open ranges, each starting above the
// watermark. Its size is bounded by the out-of-order acks in flight.
type ackSet struct {
	watermark uint64
	ranges    []index.Range
}

// contains reports whether seq is acked.
func (a *ackSet) contains(seq uint64) bool {
	if seq < a.watermark {
		return true
	}
	i := a.search(seq)
	return i < len(a.ranges) && a.ranges[i].Lo <= seq
}

// search returns the index of the first range with Hi > seq.
func (a *ackSet) search(seq uint64) int {
	return sort.Search(len(a.ranges), func(i int) bool { return a.ranges[i].Hi > seq })
}

// ackedFrom returns the end of the acked run starting at seq: seq itself
// when seq is not acked.
func (a *ackSet) ackedFrom(seq uint64) uint64 {
	if seq < a.watermark {
		seq = a.watermark
	}
	if len(a.ranges) == 0 {
		return seq
	}
	i := a.search(seq)
	if i < len(a.ranges) && a.ranges[i].Lo <= seq {
		return a.ranges[i].Hi
	}
	return seq
}

// add marks [lo, hi) acked, merging ranges and advancing the watermark.
func (a *ackSet) add(lo, hi uint64) {
	if lo < a.watermark {
		lo = a.watermark
	}
	if lo >= hi {
		return
	}
	if lo == a.watermark && (len(a.ranges) == 0 || a.ranges[0].Lo > hi) {
		a.watermark = hi // in-order fast path
		return
	}
	// Ranges i..j-1 overlap or touch [lo, hi).
	i := sort.Search(len(a.ranges), func(i int) bool { return a.ranges[i].Hi >= lo })
	j := sort.Search(len(a.ranges), func(j int) bool { return a.ranges[j].Lo > hi })
	if i < j {
		lo = min(lo, a.ranges[i].Lo)
		hi = max(hi, a.ranges[j-1].Hi)
	}
	a.ranges = slices.Replace(a.ranges, i, j, index.Range{Lo: lo, Hi: hi})
	if a.ranges[0].Lo == a.watermark {
		a.watermark = a.ranges[0].Hi
		a.ranges = a.ranges[1:]
		if len(a.ranges) == 0 {
			a.ranges = nil // let a long-grown array go
		} else if cap(a.ranges) > 64 && len(a.ranges) < cap(a.ranges)/4 {
			a.ranges = slices.Clone(a.ranges)
		}
	}
}

// countIn returns how many sequences in [lo, hi) are acked.
func (a *ackSet) countIn(lo, hi uint64) uint64 {
	var n uint64
	if lo < a.watermark {
		n += min(hi, a.watermark) - lo
		lo = a.watermark
	}
	for _, r := range a.ranges[a.search(lo):] {
		if r.Lo >= hi {
			break
		}
		n += min(r.Hi, hi) - max(r.Lo, lo)
	}
	return n
}

// snapshot returns the state clipped to sequences below limit (everything
// at or above limit is reported unacked), as persisted in the index.
func (a *ackSet) snapshot(limit uint64) (watermark uint64, ranges []index.Range) {
	watermark = min(a.watermark, limit)
	for _, r := range a.ranges {
		if r.Lo >= limit {
			break
		}
		ranges = append(ranges, index.Range{Lo: r.Lo, Hi: min(r.Hi, limit)})
	}
	return watermark, ranges
}
