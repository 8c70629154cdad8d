package segment

import (
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"
)

// SyncBuckets are the upper bounds, in seconds, of the sync round latency
// histogram kept by every Syncer.
var SyncBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5}

// SyncStats describes the sync rounds run so far.
type SyncStats struct {
	// Rounds counts sync rounds started.
	Rounds int64
	// Counts[i] counts finished rounds that took at most SyncBuckets[i] seconds
	// (and more than the bound before); the last element counts the rest.
	Counts []uint64
	// Seconds is the total time spent in rounds.
	Seconds float64
}

// SyncerOptions configures a Syncer.
type SyncerOptions struct {
	// Hook, if set, runs once per round after every dirty log of the round
	// has been sealed and fsynced and before the round's waiters are called
	// (the store commits its index batch here, so the index never claims more
	// than the segments hold durably). Its error is passed to the waiters.
	Hook func() error
	// Logger receives sync failures.
	Logger zerolog.Logger
}

// waiter is one batch's completion callback.
type waiter struct {
	l  *Log
	fn func(error)
}

// Syncer is the group-commit goroutine shared by many logs. Each round takes
// every log made dirty since the previous round, seals it (one chunk) and
// fdatasyncs it, runs the hook, then calls the round's waiters. While a round
// runs the next one gathers; an idle Syncer sleeps without timers, so a lone
// append is synced at once.
type Syncer struct {
	opts SyncerOptions

	mu      sync.Mutex
	cond    sync.Cond
	closed  bool
	dirty   []*Log
	waiters []waiter
	// spare buffers swapped with dirty and waiters each round
	spareLogs    []*Log
	spareWaiters []waiter
	done         chan struct{}
	rounds       int64
	latency      [16]uint64 // per SyncBuckets, then +Inf
	latencySum   time.Duration
}

// NewSyncer starts a Syncer goroutine; stop it with Close.
func NewSyncer(opts SyncerOptions) *Syncer {
	s := &Syncer{opts: opts, done: make(chan struct{})}
	s.cond.L = &s.mu
	go s.loop()
	return s
}

// AppendDurable appends recs to l and registers done to run once they are
// durable: on the Syncer goroutine after the round that fsyncs them, or at
// once (inline) for a log with Sync false, whose records are still sealed by
// the next round. If Append fails, its error is returned and done is not
// called.
func (s *Syncer) AppendDurable(l *Log, recs []Record, done func(error)) (uint64, error) {
	first, err := l.Append(recs...)
	if err != nil {
		return 0, err
	}
	s.Add(l, done)
	return first, nil
}

// Add marks l dirty and registers done (may be nil) for everything appended
// to l so far; see AppendDurable. After Close, Add flushes l inline.
func (s *Syncer) Add(l *Log, done func(error)) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		err := l.Flush()
		if done != nil {
			done(err)
		}
		return
	}
	if !l.syncDirty {
		l.syncDirty = true
		s.dirty = append(s.dirty, l)
	}
	transient := !l.opts.Sync
	if done != nil && !transient {
		s.waiters = append(s.waiters, waiter{l: l, fn: done})
	}
	s.cond.Signal()
	s.mu.Unlock()
	if done != nil && transient {
		done(nil)
	}
}

// Rounds returns how many sync rounds have run.
func (s *Syncer) Rounds() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.rounds
}

// Stats returns the round count and the round latency histogram.
func (s *Syncer) Stats() SyncStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SyncStats{Rounds: s.rounds, Counts: make([]uint64, len(SyncBuckets)+1), Seconds: s.latencySum.Seconds()}
	copy(st.Counts, s.latency[:])
	return st
}

// observeLocked records one round's duration.
func (s *Syncer) observeLocked(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(SyncBuckets) && sec > SyncBuckets[i] {
		i++
	}
	s.latency[i]++
	s.latencySum += d
}

func (s *Syncer) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		for len(s.dirty) == 0 && !s.closed {
			s.cond.Wait()
		}
		if len(s.dirty) == 0 {
			s.mu.Unlock()
			return
		}
		logs := s.dirty
		ws := s.waiters
		s.dirty, s.waiters = s.spareLogs[:0], s.spareWaiters[:0]
		for _, l := range logs {
			l.syncDirty = false
		}
		s.rounds++
		s.mu.Unlock()

		start := time.Now()
		if len(logs) == 1 {
			s.commit(logs[0])
		} else {
			// Logs are sealed (compressed) and fsynced in parallel: both
			// cores compress, and the filesystem can merge the fsyncs.
			var wg sync.WaitGroup
			wg.Add(len(logs))
			for _, l := range logs {
				go func() {
					defer wg.Done()
					s.commit(l)
				}()
			}
			wg.Wait()
		}
		var hookErr error
		if s.opts.Hook != nil {
			hookErr = s.opts.Hook()
		}
		d := time.Since(start)
		s.mu.Lock()
		s.observeLocked(d)
		s.mu.Unlock()
		for _, w := range ws {
			err := w.l.roundErr
			if err == nil {
				err = hookErr
			}
			w.fn(err)
		}
		clear(ws)
		clear(logs)
		s.mu.Lock()
		s.spareLogs, s.spareWaiters = logs[:0], ws[:0]
		s.mu.Unlock()
	}
}

// commit seals and fsyncs one log of a round, leaving the outcome in
// l.roundErr for the round's waiters.
func (s *Syncer) commit(l *Log) {
	err := l.Seal()
	if err == nil {
		err = l.Sync()
	}
	if errors.Is(err, ErrClosed) {
		// Close sealed and synced everything it had.
		l.mu.Lock()
		err = l.closeErr
		l.mu.Unlock()
	}
	if err != nil {
		s.opts.Logger.Error().Err(err).Str("dir", l.dir).Msg("segment: sync round failed")
	}
	l.roundErr = err
}

// Close stops the Syncer after a last round that completes every pending
// waiter. Later Adds flush inline.
func (s *Syncer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.cond.Signal()
	s.mu.Unlock()
	<-s.done
	return nil
}
