package bench

import (
	"context"
	"sync"
	"time"
)

// BrokerSample is what the broker's process and data directory held at one
// moment of a run (Config.BrokerPID, Config.BrokerDir).
type BrokerSample struct {
	// At is the time of the sample in seconds since the load started
	// (negative before it).
	At float64 `json:"at_seconds"`
	// RSSBytes is the resident set (VmRSS), PeakRSSBytes the process's
	// peak resident set since it started (VmHWM).
	RSSBytes     int64 `json:"rss_bytes"`
	PeakRSSBytes int64 `json:"peak_rss_bytes"`
	// FDs counts the process's open file descriptors (sockets included).
	FDs int `json:"fds"`
	// CPUSeconds is the process's user plus system CPU time so far.
	CPUSeconds float64 `json:"cpu_seconds"`
	// DiskBytes is the space the data directory's files take on disk
	// (allocated blocks), when Config.BrokerDir is set.
	DiskBytes int64 `json:"disk_bytes,omitempty"`
}

// BrokerResult is the broker's side of a run: samples before the run
// (Base), once every client is connected and the topology declared
// (Connected), when the load stops (End) and, with Config.Settle, after the
// connections sat idle that long (Idle).
type BrokerResult struct {
	PID       int           `json:"pid"`
	Base      BrokerSample  `json:"base"`
	Connected BrokerSample  `json:"connected"`
	End       BrokerSample  `json:"end"`
	Idle      *BrokerSample `json:"idle,omitempty"`
	// LoadPeakRSSBytes is the highest resident set sampled (every 250 ms)
	// while the load ran.
	LoadPeakRSSBytes int64 `json:"load_peak_rss_bytes"`
	// Connections and Queues are how many of each the run opened and
	// declared (exclusive queues included), to divide the broker's growth by.
	Connections int `json:"connections"`
	Queues      int `json:"queues"`
	// CPUMicrosPerMessage is the broker's CPU time during the load divided
	// by the messages sent plus received.
	CPUMicrosPerMessage float64 `json:"cpu_us_per_message,omitempty"`
}

// PerConnection returns the resident memory the broker gained between Base
// and Connected divided by the run's connections (0 without any).
func (b *BrokerResult) PerConnection() float64 {
	if b == nil || b.Connections == 0 {
		return 0
	}
	return float64(b.Connected.RSSBytes-b.Base.RSSBytes) / float64(b.Connections)
}

// brokerWatch samples the broker's process for one run.
type brokerWatch struct {
	pid   int
	dir   string
	start time.Time // the load's start, zero before it

	mu     sync.Mutex
	peak   int64
	cancel context.CancelFunc
	done   chan struct{}
}

func newBrokerWatch(pid int, dir string) *brokerWatch {
	if pid <= 0 {
		return nil
	}
	return &brokerWatch{pid: pid, dir: dir}
}

// sample reads the broker's figures now. A process that cannot be read
// (gone, or not Linux) gives zeros.
func (w *brokerWatch) sample() BrokerSample {
	s := readProc(w.pid)
	if w.dir != "" {
		s.DiskBytes = diskUsage(w.dir)
	}
	if !w.start.IsZero() {
		s.At = time.Since(w.start).Seconds()
	}
	return s
}

// watchLoad samples the resident set every 250 ms until stopLoad.
func (w *brokerWatch) watchLoad(start time.Time) {
	w.start = start
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel, w.done = cancel, make(chan struct{})
	go func() {
		defer close(w.done)
		t := time.NewTicker(250 * time.Millisecond)
		defer t.Stop()
		for {
			rss := readProc(w.pid).RSSBytes
			w.mu.Lock()
			w.peak = max(w.peak, rss)
			w.mu.Unlock()
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
}

// stopLoad ends watchLoad and returns the peak resident set it saw.
func (w *brokerWatch) stopLoad() int64 {
	if w.cancel != nil {
		w.cancel()
		<-w.done
		w.cancel = nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.peak
}
