package bench

import "time"

// pacer is a token bucket that paces one producer at a fixed rate without a
// goroutine or timer per message. Tokens accrue at rate per second up to a
// burst of 10 ms worth (at least one), so a late wake-up is caught up without
// flooding after a stall.
type pacer struct {
	interval time.Duration // time per token
	burst    time.Duration // most credit that may accrue
	next     time.Time     // when the next token is due
	timer    *time.Timer
}

func newPacer(rate float64) *pacer {
	interval := time.Duration(float64(time.Second) / rate)
	if interval <= 0 {
		interval = 1
	}
	return &pacer{
		interval: interval,
		burst:    max(10*time.Millisecond, interval),
		next:     time.Now(),
	}
}

// wait blocks until the next token is due and takes it. It returns false if
// stop closed first.
func (p *pacer) wait(stop <-chan struct{}) bool {
	now := time.Now()
	if floor := now.Add(-p.burst); p.next.Before(floor) {
		p.next = floor
	}
	if d := p.next.Sub(now); d > 0 {
		if p.timer == nil {
			p.timer = time.NewTimer(d)
		} else {
			p.timer.Reset(d)
		}
		select {
		case <-p.timer.C:
		case <-stop:
			p.timer.Stop()
			return false
		}
	}
	p.next = p.next.Add(p.interval)
	return true
}

// ready reports whether the next token is due, so wait would not block.
func (p *pacer) ready() bool {
	return !time.Now().Before(p.next)
}
