package broker

import "testing"

// TestGCPercent: the GOGC the tuner sets lets the headroom of garbage pile
// up over a small live heap, keeps Go's default over a large one, under a
// memory alarm and with nothing measured yet, and is capped by the memory
// high watermark and maxGCPercent.
func TestGCPercent(t *testing.T) {
	const mib = 1 << 20
	for _, c := range []struct {
		live, headroom, limit uint64
		alarmed               bool
		want                  int
	}{
		{32 * mib, 128 * mib, 0, false, 400},
		{40 * mib, 128 * mib, 0, false, 300}, // 320, rounded down to a step of 50
		{1 * mib, 128 * mib, 0, false, maxGCPercent},
		{200 * mib, 128 * mib, 0, false, 100},
		{32 * mib, 128 * mib, 512 * mib, false, 200}, // headroom capped at 64 MiB
		{32 * mib, 128 * mib, 0, true, 100},
		{0, 128 * mib, 0, false, 100},
	} {
		if got := gcPercent(c.live, c.headroom, c.limit, c.alarmed); got != c.want {
			t.Errorf("gcPercent(live %d MiB, headroom %d MiB, limit %d MiB, alarmed %v) = %d, want %d",
				c.live/mib, c.headroom/mib, c.limit/mib, c.alarmed, got, c.want)
		}
	}
	t.Setenv("GOGC", "50")
	if !newGCTuner(0).disabled {
		t.Error("the tuner runs despite an operator's GOGC")
	}
	t.Setenv("GOGC", "")
	if newGCTuner(-1).disabled != true || newGCTuner(0).headroom != DefaultGCHeadroom {
		t.Error("GCHeadroom -1 must turn the tuner off, 0 mean the default")
	}
}
