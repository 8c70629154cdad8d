//go:build !linux

package bench

// readProc needs Linux's /proc; elsewhere the broker's figures are zero.
func readProc(int) BrokerSample { return BrokerSample{} }

// diskUsage is not measured outside Linux.
func diskUsage(string) int64 { return 0 }
