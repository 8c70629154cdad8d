package bench

import (
	"encoding/json"
	"math/rand/v2"
	"testing"
)

func TestBodyRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	for _, kind := range []BodyKind{BodyZeros, BodyRandom, BodyJSON} {
		for _, size := range []int{0, 7, 8, 12, 16, 20, 30, 40, 47, 48, 1024, 1 << 20} {
			w := newBodyWriter(kind, size, 7, rng)
			for _, ts := range []int64{1, 1_700_000_000_123_456_789, 9_000_000_000_000_000_000} {
				b := w.stamp(ts)
				wantLen := size
				if kind == BodyJSON {
					wantLen = max(size, jsonMinSize)
				}
				if len(b) != wantLen {
					t.Fatalf("%s/%d: body length %d, want %d", kind, size, len(b), wantLen)
				}
				got, ok := publishTime(kind, b)
				if size < 8 && kind != BodyJSON {
					if ok {
						t.Fatalf("%s/%d: time found in a body too short to carry one", kind, size)
					}
					continue
				}
				if !ok || got != ts {
					t.Fatalf("%s/%d: publishTime = %d,%v, want %d", kind, size, got, ok, ts)
				}
				if kind == BodyJSON {
					var doc map[string]any
					if err := json.Unmarshal(b, &doc); err != nil {
						t.Fatalf("json/%d: invalid JSON %q: %v", size, b, err)
					}
				}
			}
		}
	}
}

func TestBodyCarriesProducerAndSequence(t *testing.T) {
	w := newBodyWriter(BodyRandom, 64, 0x01020304, rand.New(rand.NewPCG(1, 1)))
	w.stamp(5)
	b := w.stamp(6)
	if b[8] != 1 || b[9] != 2 || b[10] != 3 || b[11] != 4 {
		t.Fatalf("producer id bytes % x", b[8:12])
	}
	if b[15] != 2 {
		t.Fatalf("sequence bytes % x, want 2", b[12:16])
	}
	j := newBodyWriter(BodyJSON, 100, 42, rand.New(rand.NewPCG(1, 1)))
	var doc struct {
		TS  int64  `json:"ts,string"`
		P   int    `json:"p,string"`
		Pad string `json:"pad"`
	}
	if err := json.Unmarshal(j.stamp(123), &doc); err != nil || doc.TS != 123 || doc.P != 42 || doc.Pad == "" {
		t.Fatalf("json body %+v, %v", doc, err)
	}
}

func TestPublishTimeRejectsForeignBodies(t *testing.T) {
	for _, tc := range []struct {
		kind BodyKind
		body string
	}{
		{BodyJSON, `{"ts":"12"}`},
		{BodyJSON, `{"xx":"0000000000000000123"}`},
		{BodyJSON, `{"ts":"00000000000000001x3"}`},
		{BodyZeros, "\x00\x00\x00\x00\x00\x00\x00\x00"},
		{BodyRandom, "short"},
	} {
		if v, ok := publishTime(tc.kind, []byte(tc.body)); ok {
			t.Errorf("%s %q: got time %d", tc.kind, tc.body, v)
		}
	}
}

func TestBodyStampDoesNotAllocate(t *testing.T) {
	for _, kind := range []BodyKind{BodyZeros, BodyRandom, BodyJSON} {
		w := newBodyWriter(kind, 1024, 1, rand.New(rand.NewPCG(1, 1)))
		n := testing.AllocsPerRun(1000, func() {
			b := w.stamp(1_700_000_000_000_000_000)
			if _, ok := publishTime(kind, b); !ok {
				panic("no time")
			}
		})
		if n != 0 {
			t.Errorf("%s: %.1f allocations per stamp", kind, n)
		}
	}
}

func BenchmarkBodyStamp(b *testing.B) {
	for _, kind := range []BodyKind{BodyZeros, BodyJSON} {
		b.Run(string(kind), func(b *testing.B) {
			w := newBodyWriter(kind, 1024, 1, rand.New(rand.NewPCG(1, 1)))
			b.ReportAllocs()
			b.SetBytes(1024)
			for b.Loop() {
				publishTime(kind, w.stamp(1_700_000_000_000_000_000))
			}
		})
	}
}
