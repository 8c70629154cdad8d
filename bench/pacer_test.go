package bench

import (
	"testing"
	"time"
)

func TestPacerHoldsRate(t *testing.T) {
	p := newPacer(2000) // 0.5 ms per token
	stop := make(chan struct{})
	start := time.Now()
	n := 0
	for time.Since(start) < 300*time.Millisecond {
		if !p.wait(stop) {
			t.Fatal("wait returned false without stop")
		}
		n++
	}
	elapsed := time.Since(start).Seconds()
	// At most one burst (10 ms = 20 tokens) above the rate; the machine may
	// be slow, so allow falling short more generously.
	if max := 2000*elapsed + 25; float64(n) > max {
		t.Fatalf("%d tokens in %.3f s, more than %.0f", n, elapsed, max)
	}
	if min := 2000 * elapsed * 0.7; float64(n) < min {
		t.Fatalf("%d tokens in %.3f s, fewer than %.0f", n, elapsed, min)
	}
}

func TestPacerStops(t *testing.T) {
	p := newPacer(0.5) // one token every 2 s
	stop := make(chan struct{})
	if !p.wait(stop) { // the first token is due at once
		t.Fatal("first wait failed")
	}
	go func() { time.Sleep(20 * time.Millisecond); close(stop) }()
	start := time.Now()
	if p.wait(stop) {
		t.Fatal("wait succeeded although stopped")
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("stop took %v", d)
	}
}
