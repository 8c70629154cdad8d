package broker

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/warrenmq/warren/amqpwire"
)

// Resource alarms, as RabbitMQ has them: when the broker's memory passes the
// high watermark, or the free space of the data directory's file system
// falls below the disk free limit, every connection that publishes is
// blocked: it is sent connection.blocked (when the client announced the
// capability) and its socket is no longer read until the alarm clears,
// when it is sent connection.unblocked. Connections that only consume keep
// going, so consumers drain the queues that caused the alarm.
//
// A monitor goroutine samples the process's resident memory and the free
// disk space every Config.AlarmInterval.

// Alarm names the resources that can raise an alarm.
type Alarm uint8

// Alarms.
const (
	AlarmMemory Alarm = 1 << iota
	AlarmDisk
)

// DefaultMemoryHighWatermark is the fraction of the machine's memory the
// broker may use before blocking publishers (RabbitMQ's default).
const DefaultMemoryHighWatermark = "0.4"

// DefaultDiskFreeLimit is the free space below which publishers are
// blocked (RabbitMQ's default).
const DefaultDiskFreeLimit = "50MB"

// alarms is the server's alarm state.
type alarms struct {
	mu        sync.Mutex
	active    Alarm
	memLimit  uint64 // bytes of resident memory
	memSpec   string
	diskLimit uint64 // bytes free
	diskSpec  string
	memUsed   uint64 // last samples
	diskFree  uint64
	// cleared is closed (and replaced) whenever the last alarm clears, to
	// wake the blocked readers.
	cleared chan struct{}
}

// AlarmStatus describes the resource alarms and the figures behind them.
type AlarmStatus struct {
	Active       Alarm
	MemoryUsed   uint64
	MemoryLimit  uint64
	MemorySpec   string
	DiskFree     uint64
	DiskLimit    uint64
	DiskFreeSpec string
}

// Alarms returns the current alarm state.
func (s *Server) Alarms() AlarmStatus {
	a := &s.alarm
	a.mu.Lock()
	defer a.mu.Unlock()
	return AlarmStatus{Active: a.active, MemoryUsed: a.memUsed, MemoryLimit: a.memLimit, MemorySpec: a.memSpec,
		DiskFree: a.diskFree, DiskLimit: a.diskLimit, DiskFreeSpec: a.diskSpec}
}

// SetMemoryHighWatermark sets the memory limit, as rabbitmqctl's
// set_vm_memory_high_watermark takes it: a fraction of the machine's memory
// ("0.4"), or "absolute" and a size ("absolute 2GB", also just "2GB").
// The alarm is re-evaluated at once.
func (s *Server) SetMemoryHighWatermark(spec string) error {
	limit, err := parseMemoryWatermark(spec, totalMemory())
	if err != nil {
		return err
	}
	s.alarm.mu.Lock()
	s.alarm.memLimit, s.alarm.memSpec = limit, strings.TrimSpace(spec)
	s.alarm.mu.Unlock()
	s.log.Info().Str("watermark", spec).Uint64("limit_bytes", limit).Msg("memory high watermark set")
	s.checkAlarms()
	return nil
}

// SetDiskFreeLimit sets the free-space limit, as rabbitmqctl's
// set_disk_free_limit takes it: a size ("50MB", "1GB", bytes), or
// "mem_relative" and a factor of the machine's memory ("mem_relative 1.5").
func (s *Server) SetDiskFreeLimit(spec string) error {
	limit, err := parseDiskFreeLimit(spec, totalMemory())
	if err != nil {
		return err
	}
	s.alarm.mu.Lock()
	s.alarm.diskLimit, s.alarm.diskSpec = limit, strings.TrimSpace(spec)
	s.alarm.mu.Unlock()
	s.log.Info().Str("limit", spec).Uint64("limit_bytes", limit).Msg("disk free limit set")
	s.checkAlarms()
	return nil
}

// alarmLoop samples memory and disk until the server shuts down.
func (s *Server) alarmLoop() {
	t := time.NewTicker(s.cfg.AlarmInterval)
	defer t.Stop()
	for {
		select {
		case <-s.stopAlarms:
			return
		case <-t.C:
			s.checkAlarms()
			s.alarm.mu.Lock()
			limit, alarmed := s.alarm.memLimit, s.alarm.active&AlarmMemory != 0
			s.alarm.mu.Unlock()
			s.gc.tune(limit, alarmed)
		}
	}
}

// checkAlarms samples the resources and raises or clears the alarms.
func (s *Server) checkAlarms() {
	mem := residentMemory()
	free, diskErr := diskFree(s.cfg.DataDir)
	a := &s.alarm
	a.mu.Lock()
	a.memUsed = mem
	if diskErr == nil {
		a.diskFree = free
	}
	was := a.active
	now := Alarm(0)
	if a.memLimit > 0 && mem > a.memLimit {
		now |= AlarmMemory
	}
	if diskErr == nil && free < a.diskLimit {
		now |= AlarmDisk
	} else if diskErr != nil {
		now |= was & AlarmDisk // cannot tell: keep what we had
	}
	a.active = now
	var wake chan struct{}
	if was != 0 && now == 0 {
		wake = a.cleared
		a.cleared = make(chan struct{})
	}
	a.mu.Unlock()
	s.alarmed.Store(now != 0)
	if changed := was ^ now; changed != 0 {
		if changed&AlarmMemory != 0 {
			if now&AlarmMemory != 0 {
				s.log.Warn().Uint64("used", mem).Uint64("limit", a.memLimit).Msg("memory resource limit alarm set: publishers will be blocked")
			} else {
				s.log.Warn().Uint64("used", mem).Uint64("limit", a.memLimit).Msg("memory resource limit alarm cleared")
			}
		}
		if changed&AlarmDisk != 0 {
			if now&AlarmDisk != 0 {
				s.log.Warn().Uint64("free", free).Uint64("limit", a.diskLimit).Msg("disk resource limit alarm set: publishers will be blocked")
			} else {
				s.log.Warn().Uint64("free", free).Uint64("limit", a.diskLimit).Msg("disk resource limit alarm cleared")
			}
		}
	}
	if wake != nil {
		close(wake)
	}
}

// alarmCleared returns a channel closed when no alarm is active any more,
// or nil if none is active now.
func (s *Server) alarmCleared() <-chan struct{} {
	s.alarm.mu.Lock()
	defer s.alarm.mu.Unlock()
	if s.alarm.active == 0 {
		return nil
	}
	return s.alarm.cleared
}

// blockWhileAlarmed is called by the reader after a publish while an alarm
// is active: it stops reading the socket until the alarm clears, telling
// the client with connection.blocked and connection.unblocked when it
// asked for them.
func (c *conn) blockWhileAlarmed() {
	cleared := c.s.alarmCleared()
	if cleared == nil {
		return
	}
	c.flushDirty()
	reason := "low on memory"
	if c.s.Alarms().Active&AlarmDisk != 0 {
		reason = "low on disk"
	}
	c.log.Info().Str("reason", reason).Msg("connection blocked: resource alarm")
	if c.capBlocked {
		c.sendMethod(0, &amqpwire.ConnectionBlocked{Reason: reason})
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-cleared:
			if c.capBlocked {
				c.sendMethod(0, &amqpwire.ConnectionUnblocked{})
			}
			c.log.Info().Msg("connection unblocked")
			return
		case <-c.writerEnd:
			return
		case <-t.C:
			if c.s.closing.Load() || c.closeSent.Load() {
				return
			}
		}
	}
}

// residentMemory returns the process's resident set size in bytes.
func residentMemory() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}

// totalMemory returns the memory available to the process: the cgroup's
// limit when one is set, else the machine's.
func totalMemory() uint64 {
	var total uint64
	if f, err := os.Open("/proc/meminfo"); err == nil {
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			if rest, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
				fs := strings.Fields(rest)
				if len(fs) > 0 {
					kb, _ := strconv.ParseUint(fs[0], 10, 64)
					total = kb << 10
				}
				break
			}
		}
		f.Close()
	}
	if b, err := os.ReadFile("/sys/fs/cgroup/memory.max"); err == nil {
		if n, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && (total == 0 || n < total) {
			total = n
		}
	}
	return total
}

// diskFree returns the bytes available to unprivileged users on the file
// system holding dir.
func diskFree(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	return st.Bavail * uint64(st.Bsize), nil
}

// parseMemoryWatermark reads a fraction of total or an absolute size.
func parseMemoryWatermark(spec string, total uint64) (uint64, error) {
	fs := strings.Fields(spec)
	switch {
	case len(fs) == 2 && fs[0] == "absolute":
		return parseSize(fs[1])
	case len(fs) == 1:
		if f, err := strconv.ParseFloat(fs[0], 64); err == nil && !strings.ContainsAny(fs[0], "kKmMgGtTiB") {
			if f < 0 || f > 1 {
				return 0, fmt.Errorf("memory high watermark %v: a fraction must be between 0 and 1", f)
			}
			if total == 0 {
				return 0, fmt.Errorf("memory high watermark %v: the machine's memory is unknown; give an absolute size", f)
			}
			return uint64(f * float64(total)), nil
		}
		return parseSize(fs[0])
	}
	return 0, fmt.Errorf("memory high watermark %q: want a fraction (0.4) or 'absolute SIZE'", spec)
}

// parseDiskFreeLimit reads a size or "mem_relative FACTOR".
func parseDiskFreeLimit(spec string, total uint64) (uint64, error) {
	fs := strings.Fields(spec)
	switch {
	case len(fs) == 2 && fs[0] == "mem_relative":
		f, err := strconv.ParseFloat(fs[1], 64)
		if err != nil || f < 0 {
			return 0, fmt.Errorf("disk free limit %q: bad factor", spec)
		}
		return uint64(f * float64(total)), nil
	case len(fs) == 1:
		return parseSize(fs[0])
	}
	return 0, fmt.Errorf("disk free limit %q: want a size (50MB) or 'mem_relative FACTOR'", spec)
}

// parseSize reads a byte count with an optional unit as RabbitMQ accepts
// them: kB/MB/GB/TB are powers of 1000, KiB/MiB/GiB/TiB (and k/K, M, G,
// T alone) powers of 1024.
func parseSize(s string) (uint64, error) {
	i := 0
	for i < len(s) && (s[i] >= '0' && s[i] <= '9' || s[i] == '.') {
		i++
	}
	num, unit := s[:i], s[i:]
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 {
		return 0, fmt.Errorf("bad size %q", s)
	}
	mult := map[string]float64{
		"": 1, "B": 1,
		"k": 1 << 10, "K": 1 << 10, "KiB": 1 << 10, "kiB": 1 << 10, "kB": 1e3, "KB": 1e3,
		"M": 1 << 20, "MiB": 1 << 20, "MB": 1e6,
		"G": 1 << 30, "GiB": 1 << 30, "GB": 1e9,
		"T": 1 << 40, "TiB": 1 << 40, "TB": 1e12,
	}[unit]
	if mult == 0 {
		return 0, fmt.Errorf("bad size %q: unknown unit %q", s, unit)
	}
	return uint64(f * mult), nil
}
