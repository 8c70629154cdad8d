//go:build !(linux || darwin || freebsd || netbsd || openbsd || dragonfly)

package bench

import "time"

// cpuTime is unavailable on this platform and reports zero.
func cpuTime() time.Duration { return 0 }
