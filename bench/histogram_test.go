package bench

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// oracle returns the value of rank ceil(q*n) in sorted xs, the definition
// Histogram.Quantile approximates.
func oracle(sorted []int64, q float64) int64 {
	rank := int(math.Ceil(q * float64(len(sorted))))
	rank = max(rank, 1)
	return sorted[rank-1]
}

func TestHistogramQuantilesAgainstSortedOracle(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() int64{
		"small-ints":  func() int64 { return rng.Int64N(300) },
		"uniform-ms":  func() int64 { return rng.Int64N(50_000_000) },
		"exponential": func() int64 { return int64(rng.ExpFloat64() * 2e6) },
		"lognormal":   func() int64 { return int64(math.Exp(rng.NormFloat64()*2 + 13)) },
		"bimodal": func() int64 {
			if rng.IntN(100) < 3 {
				return 200_000_000 + rng.Int64N(1_000_000)
			}
			return 100_000 + rng.Int64N(10_000)
		},
		"huge": func() int64 { return rng.Int64N(math.MaxInt64/2) + math.MaxInt64/4 },
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			h := NewHistogram()
			xs := make([]int64, 20_000)
			for i := range xs {
				xs[i] = gen()
				h.Record(xs[i])
			}
			slices.Sort(xs)
			if h.Count() != uint64(len(xs)) {
				t.Fatalf("count %d, want %d", h.Count(), len(xs))
			}
			if h.Min() != xs[0] || h.Max() != xs[len(xs)-1] {
				t.Fatalf("min/max %d/%d, want %d/%d", h.Min(), h.Max(), xs[0], xs[len(xs)-1])
			}
			for _, q := range []float64{0.001, 0.1, 0.5, 0.9, 0.95, 0.99, 0.999, 0.9999} {
				got, want := h.Quantile(q), oracle(xs, q)
				if rel := math.Abs(float64(got-want)) / math.Max(float64(want), 1); rel > 0.01 && got != want {
					t.Errorf("q%.4f = %d, oracle %d (%.3f%% off)", q, got, want, rel*100)
				}
			}
			if h.Quantile(1) != xs[len(xs)-1] {
				t.Errorf("q1 = %d, want exact max %d", h.Quantile(1), xs[len(xs)-1])
			}
			var sum float64
			for _, x := range xs {
				sum += float64(x)
			}
			if m := sum / float64(len(xs)); math.Abs(h.Mean()-m) > 1e-6*m+1e-9 {
				t.Errorf("mean %f, want %f", h.Mean(), m)
			}
		})
	}
}

func TestHistogramExactBelow256(t *testing.T) {
	h := NewHistogram()
	for v := int64(0); v < 256; v++ {
		h.Record(v)
	}
	for v := int64(1); v <= 256; v++ {
		if got := h.Quantile(float64(v) / 256); got != v-1 {
			t.Fatalf("quantile %d/256 = %d, want %d", v, got, v-1)
		}
	}
}

func TestHistogramBucketBoundaries(t *testing.T) {
	prevHi := int64(-1)
	for i := 0; i < histBucketSize; i++ {
		lo, hi := histRange(i)
		if lo < 0 || hi < 0 { // past the int64 range
			break
		}
		if lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d", i, lo, prevHi)
		}
		if histIndex(lo) != i || histIndex(hi) != i {
			t.Fatalf("bucket %d [%d,%d] maps to %d,%d", i, lo, hi, histIndex(lo), histIndex(hi))
		}
		if lo >= histExact && float64(hi-lo+1)/float64(lo) > 1.0/histSub+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d", i, lo, hi, histSub)
		}
		prevHi = hi
		if hi == math.MaxInt64 {
			break
		}
	}
	if got := histIndex(math.MaxInt64); got >= histBucketSize {
		t.Fatalf("index of MaxInt64 = %d, out of %d buckets", got, histBucketSize)
	}
}

func TestHistogramMergeEqualsCombined(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	all := NewHistogram()
	parts := []*Histogram{NewHistogram(), NewHistogram(), NewHistogram()}
	for i := range 30_000 {
		v := int64(rng.ExpFloat64() * float64(1+i%3) * 1e6)
		all.Record(v)
		parts[i%3].Record(v)
	}
	merged := NewHistogram()
	merged.Merge(NewHistogram()) // merging an empty histogram changes nothing
	for _, p := range parts {
		merged.Merge(p)
	}
	if merged.Count() != all.Count() || merged.Min() != all.Min() || merged.Max() != all.Max() {
		t.Fatalf("merged count/min/max %d/%d/%d, want %d/%d/%d",
			merged.Count(), merged.Min(), merged.Max(), all.Count(), all.Min(), all.Max())
	}
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999} {
		if merged.Quantile(q) != all.Quantile(q) {
			t.Errorf("q%.3f merged %d, combined %d", q, merged.Quantile(q), all.Quantile(q))
		}
	}
}

func TestHistogramResetAndEmpty(t *testing.T) {
	h := NewHistogram()
	if h.Quantile(0.5) != 0 || h.Max() != 0 || h.Min() != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	h.Record(5_000_000)
	h.Record(-3) // counted as zero
	if h.Min() != 0 || h.Count() != 2 {
		t.Fatalf("min %d count %d after recording a negative value", h.Min(), h.Count())
	}
	h.Reset()
	if h.Count() != 0 || h.Quantile(0.99) != 0 {
		t.Fatalf("reset left count %d", h.Count())
	}
	h.Record(700)
	if h.Min() != 700 || h.Max() != 700 {
		t.Fatalf("after reset min/max %d/%d, want 700", h.Min(), h.Max())
	}
	for i, c := range h.counts {
		if c != 0 && i != histIndex(700) {
			t.Fatalf("bucket %d still holds %d after reset", i, c)
		}
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	h := NewHistogram()
	b.ReportAllocs()
	v := int64(1)
	for b.Loop() {
		v = v*6364136223846793005 + 1442695040888963407
		h.Record((v >> 1) % 1_000_000_000)
	}
}
