package bench

import (
	"math"
	"math/bits"
)

// Histogram layout: log-linear buckets in the style of HdrHistogram.
//
//	value v            bucket index
//	0 <= v < 256       v                               (exact)
//	v >= 256           256 + (e-1)*128 + (v>>e - 128)  where e = bits.Len64(v) - 8
//
// Above 256 every power of two is split into 128 equal sub-buckets, so a
// bucket is at most 1/128 (0.78%) of the values it holds wide, and the
// midpoint reported for it is within 0.4% of any value in it.
const (
	histSubBits    = 7
	histSub        = 1 << histSubBits // sub-buckets per power of two
	histExact      = 2 * histSub      // values below this are stored exactly
	histMaxExp     = 64 - histSubBits - 1
	histBucketSize = histExact + (histMaxExp-1)*histSub + histSub
)

// Histogram counts non-negative int64 values (latencies in nanoseconds) in
// log-linear buckets with a relative precision better than 1%. It is not safe
// for concurrent use; merge per-goroutine histograms with Merge. The zero
// value is not usable: create one with NewHistogram.
type Histogram struct {
	counts []uint64
	total  uint64
	sum    float64
	min    int64
	max    int64
	lo, hi int // range of buckets that may be non-zero; lo > hi when empty
}

// NewHistogram returns an empty histogram.
func NewHistogram() *Histogram {
	h := &Histogram{counts: make([]uint64, histBucketSize)}
	h.Reset()
	return h
}

func histIndex(v int64) int {
	if v < histExact {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - (histSubBits + 1)
	return histExact + (e-1)*histSub + int(uint64(v)>>uint(e)) - histSub
}

// histRange returns the lowest and highest value that land in bucket i.
func histRange(i int) (lo, hi int64) {
	if i < histExact {
		return int64(i), int64(i)
	}
	e := (i-histExact)/histSub + 1
	m := int64((i-histExact)%histSub + histSub)
	lo = m << uint(e)
	hi = lo + (int64(1) << uint(e)) - 1
	return lo, hi
}

// Record adds one value. Negative values are counted as zero.
func (h *Histogram) Record(v int64) {
	if v < 0 {
		v = 0
	}
	i := histIndex(v)
	h.counts[i]++
	if i < h.lo {
		h.lo = i
	}
	if i > h.hi {
		h.hi = i
	}
	h.total++
	h.sum += float64(v)
	if v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
}

// Count returns the number of recorded values.
func (h *Histogram) Count() uint64 { return h.total }

// Min returns the smallest recorded value, or 0 when empty.
func (h *Histogram) Min() int64 {
	if h.total == 0 {
		return 0
	}
	return h.min
}

// Max returns the largest recorded value, or 0 when empty.
func (h *Histogram) Max() int64 {
	if h.total == 0 {
		return 0
	}
	return h.max
}

// Mean returns the exact mean of the recorded values, or 0 when empty.
func (h *Histogram) Mean() float64 {
	if h.total == 0 {
		return 0
	}
	return h.sum / float64(h.total)
}

// Merge adds every value recorded in o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.total == 0 {
		return
	}
	for i := o.lo; i <= o.hi; i++ {
		h.counts[i] += o.counts[i]
	}
	h.lo = min(h.lo, o.lo)
	h.hi = max(h.hi, o.hi)
	h.total += o.total
	h.sum += o.sum
	h.min = min(h.min, o.min)
	h.max = max(h.max, o.max)
}

// Reset empties the histogram, keeping its memory.
func (h *Histogram) Reset() {
	if h.lo <= h.hi {
		clear(h.counts[h.lo : h.hi+1])
	}
	h.lo, h.hi = len(h.counts), -1
	h.total, h.sum = 0, 0
	h.min, h.max = math.MaxInt64, 0
}

// Quantile returns the value below or at which the fraction q (0..1) of the
// recorded values lie, within the bucket precision; q >= 1 returns the exact
// maximum. It returns 0 when the histogram is empty.
func (h *Histogram) Quantile(q float64) int64 {
	if h.total == 0 {
		return 0
	}
	if q >= 1 {
		return h.max
	}
	if q <= 0 {
		return h.min
	}
	rank := uint64(math.Ceil(q * float64(h.total)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i := h.lo; i <= h.hi; i++ {
		seen += h.counts[i]
		if seen >= rank {
			lo, hi := histRange(i)
			v := lo + (hi-lo)/2
			return min(max(v, h.min), h.max)
		}
	}
	return h.max
}
