package segment

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
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
	// Workers bounds how many logs a round flushes at once (default: the
	// number of CPUs, at least 2).
	Workers int
	// RetryMin and RetryMax bound the backoff between attempts to make a
	// failing log write again (defaults 50 ms and 2 s).
	RetryMin, RetryMax time.Duration
	// Hold, if set, is how long a large record (Record.Owned, at least
	// LargeBody) that a consumer was handed (Log.ViewPinned) stays pending
	// before a round writes it, for each MiB of its body begun (at most 64
	// times Hold), unless it is acknowledged first (Log.Skip) and only a
	// stub is written. A round whose logs hold such younger records waits
	// for them, no longer than until they are all acknowledged, and covers
	// the records appended before the wait. So the disk is spared the
	// bodies that consumers take and acknowledge in time, and their
	// confirms come no later than that; the records of a log whose large
	// records nobody takes are written at once.
	Hold time.Duration
}

// Syncer is the group-commit goroutine shared by many logs. Each round takes
// every log made dirty since the previous round and flushes it: creates its
// next file if needed, seals its pending records and fdatasyncs them, using
// at most Workers goroutines; then it runs the hook and calls the round's
// waiters. While a round runs the next one gathers; an idle Syncer sleeps
// without timers, so a lone append is synced at once.
//
// A log whose flush fails (a full disk, an I/O error) keeps its waiters: it
// refuses new appends, and the Syncer retries it with a growing backoff,
// writing its records again, until a retry succeeds and its waiters are
// called, or until Close, which fails them.
type Syncer struct {
	opts SyncerOptions

	mu   sync.Mutex
	kick chan struct{}
	// holdWake is signalled by the logs a round's hold waits for, at each
	// Skip.
	holdWake chan struct{}
	closed   bool
	dirty    []*Log
	spare    []*Log
	failing  []*Log // owned by the loop
	done     chan struct{}
	rounds   atomic.Int64
	// round latency, guarded by mu
	latency    [16]uint64 // per SyncBuckets, then +Inf
	latencySum time.Duration
}

// NewSyncer starts a Syncer goroutine; stop it with Close.
func NewSyncer(opts SyncerOptions) *Syncer {
	if opts.Workers <= 0 {
		opts.Workers = max(2, runtime.GOMAXPROCS(0))
	}
	if opts.RetryMin <= 0 {
		opts.RetryMin = 50 * time.Millisecond
	}
	if opts.RetryMax <= 0 {
		opts.RetryMax = 2 * time.Second
	}
	s := &Syncer{opts: opts, kick: make(chan struct{}, 1), done: make(chan struct{}), holdWake: make(chan struct{}, 1)}
	go s.loop()
	return s
}

// AppendDurable appends recs to l and registers done to run once they are
// durable: on the Syncer goroutine after the round that fsyncs them, or at
// once (inline) for a log with Sync false. If Append fails, its error is
// returned and done is not called.
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
		err := l.flush(true)
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
		l.waiters = append(l.waiters, done)
	}
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	if done != nil && transient {
		done(nil)
	}
}

// Rounds returns how many sync rounds have run.
func (s *Syncer) Rounds() int64 { return s.rounds.Load() }

// Stats returns the round count and the round latency histogram.
func (s *Syncer) Stats() SyncStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := SyncStats{Rounds: s.rounds.Load(), Counts: make([]uint64, len(SyncBuckets)+1), Seconds: s.latencySum.Seconds()}
	copy(st.Counts, s.latency[:])
	return st
}

// observe records one round's duration.
func (s *Syncer) observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(SyncBuckets) && sec > SyncBuckets[i] {
		i++
	}
	s.mu.Lock()
	s.latency[i]++
	s.latencySum += d
	s.mu.Unlock()
}

// job is one log of a round with the waiters registered before it began.
type job struct {
	l       *Log
	waiters []func(error)
	err     error
	retried bool
	limit   uint64 // set by the hold: the round writes the records below
}

func (s *Syncer) loop() {
	defer close(s.done)
	var timer *time.Timer
	var timerC <-chan time.Time
	for {
		s.mu.Lock()
		closed := s.closed
		logs := s.dirty
		s.dirty, s.spare = s.spare[:0], nil
		jobs := make([]job, 0, len(logs)+len(s.failing))
		for _, l := range logs {
			l.syncDirty = false
			jobs = append(jobs, job{l: l, waiters: l.waiters})
			l.waiters = nil
		}
		s.mu.Unlock()
		clear(logs)
		s.mu.Lock()
		s.spare = logs[:0]
		s.mu.Unlock()

		// Failing logs are retried when their backoff has passed (at once
		// when closing); those not due wait for the timer.
		now := time.Now()
		var wait time.Duration
		kept := s.failing[:0]
		for _, l := range s.failing {
			if j := indexOf(jobs, l); j >= 0 {
				jobs[j].retried = true
				continue // dirty again: retried in this round
			}
			due := l.lastTry.Add(s.backoff(l))
			if closed || !now.Before(due) {
				s.mu.Lock()
				jobs = append(jobs, job{l: l, retried: true, waiters: l.waiters})
				l.waiters = nil
				s.mu.Unlock()
				continue
			}
			if d := due.Sub(now); wait == 0 || d < wait {
				wait = d
			}
			kept = append(kept, l)
		}
		s.failing = kept
		if len(jobs) == 0 {
			if closed && len(s.failing) == 0 {
				return
			}
			if wait > 0 {
				if timer == nil {
					timer = time.NewTimer(wait)
				} else {
					timer.Reset(wait)
				}
				timerC = timer.C
			}
			select {
			case <-s.kick:
			case <-timerC:
				timerC = nil
			}
			continue
		}
		s.rounds.Add(1)
		start := time.Now()
		s.run(jobs, closed)
		var hookErr error
		if s.opts.Hook != nil {
			hookErr = s.opts.Hook()
		}
		s.observe(time.Since(start))
		for i := range jobs {
			j := &jobs[i]
			if j.err != nil && !closed && !errors.Is(j.err, ErrClosed) {
				// Keep the waiters: the records are written again by a
				// retry.
				j.l.lastTry = time.Now()
				s.mu.Lock()
				j.l.waiters = append(j.waiters, j.l.waiters...)
				s.mu.Unlock()
				s.failing = append(s.failing, j.l)
				continue
			}
			err := j.err
			if err == nil {
				err = hookErr
			}
			for _, w := range j.waiters {
				w(err)
			}
			if closed && j.err != nil {
				// Closing: fail any waiter that registered meanwhile.
				s.mu.Lock()
				late := j.l.waiters
				j.l.waiters = nil
				s.mu.Unlock()
				for _, w := range late {
					w(j.err)
				}
			}
		}
	}
}

func indexOf(jobs []job, l *Log) int {
	for i := range jobs {
		if jobs[i].l == l {
			return i
		}
	}
	return -1
}

// backoff is how long to wait after a failed attempt on l.
func (s *Syncer) backoff(l *Log) time.Duration {
	l.mu.Lock()
	n := l.failures
	l.mu.Unlock()
	d := s.opts.RetryMin
	for i := 1; i < n && d < s.opts.RetryMax; i++ {
		d *= 2
	}
	return min(d, s.opts.RetryMax)
}

// holding reports whether a log of the round still holds a large record it
// waits for that is not acknowledged.
func (s *Syncer) holding(jobs []job) bool {
	for i := range jobs {
		if j := &jobs[i]; j.limit != 0 && j.l.holdsUnacked(j.limit, s.opts.Hold) {
			return true
		}
	}
	return false
}

// hold waits, at most wait, until no log of the round holds a large
// record it waits for that is not acknowledged.
func (s *Syncer) hold(jobs []job, wait time.Duration) {
	select {
	case <-s.holdWake: // left from an earlier round
	default:
	}
	for i := range jobs {
		if jobs[i].limit != 0 {
			jobs[i].l.setHoldWake(s.holdWake)
		}
	}
	if s.holding(jobs) {
		t := time.NewTimer(wait)
		for done := false; !done; {
			select {
			case <-t.C:
				done = true
			case <-s.holdWake:
				done = !s.holding(jobs)
			}
		}
		t.Stop()
	}
	for i := range jobs {
		if jobs[i].limit != 0 {
			jobs[i].l.setHoldWake(nil)
		}
	}
}

// run flushes the round's logs with at most Workers goroutines.
func (s *Syncer) run(jobs []job, closing bool) {
	if s.opts.Hold > 0 && !closing {
		// One wait for the whole round: the records its waiters cover
		// were all appended before the snapshot each log takes here.
		var wait time.Duration
		for i := range jobs {
			if w, limit := jobs[i].l.holdFor(s.opts.Hold); w > 0 {
				jobs[i].limit = limit
				wait = max(wait, w)
			}
		}
		// The wait ends early once every large record it is for has been
		// acknowledged (Skip signals holdWake): consumers that keep up
		// take no longer than they need.
		if wait > 0 {
			s.hold(jobs, wait)
		}
	}
	n := min(s.opts.Workers, len(jobs))
	if n <= 1 {
		for i := range jobs {
			s.commit(&jobs[i])
		}
		return
	}
	// Logs are sealed (compressed) and fsynced in parallel: both cores
	// compress, and the filesystem can merge the fsyncs.
	var next atomic.Int64
	var wg sync.WaitGroup
	wg.Add(n)
	for w := 0; w < n; w++ {
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(jobs) {
					return
				}
				s.commit(&jobs[i])
			}
		}()
	}
	wg.Wait()
}

// commit flushes one log of a round, first trying to leave the failing
// state when the log is in it.
func (s *Syncer) commit(j *job) {
	l := j.l
	l.fmu.Lock()
	var err error
	if l.Failing() != nil {
		err = l.recover()
	}
	if err == nil {
		if j.limit != 0 {
			l.setFlushLimit(j.limit)
		}
		err = l.flushLocked(l.opts.Sync)
		if j.limit != 0 {
			l.setFlushLimit(0)
		}
	}
	l.fmu.Unlock()
	if errors.Is(err, ErrClosed) {
		// Close flushed everything it had.
		l.mu.Lock()
		err = l.closeErr
		l.mu.Unlock()
	}
	if err != nil {
		// The log reported the failure itself, once.
		s.opts.Logger.Debug().Err(err).Str("dir", l.dir).Msg("segment: flush failed")
	}
	j.err = err
}

// Close stops the Syncer after a last round that flushes every dirty log
// and retries every failing one once; waiters of a log that still fails get
// its error. Later Adds flush inline.
func (s *Syncer) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.kick <- struct{}{}:
	default:
	}
	<-s.done
	return nil
}
