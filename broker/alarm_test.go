package broker

import "testing"

func TestParseAlarmLimits(t *testing.T) {
	var total uint64 = 16 << 30
	for _, tc := range []struct {
		spec string
		want uint64
		disk bool
		bad  bool
	}{
		{spec: "0.4", want: uint64(0.4 * float64(total))},
		{spec: "absolute 2GB", want: 2e9},
		{spec: "absolute 512MiB", want: 512 << 20},
		{spec: "1024", bad: true}, // a bare number is a fraction
		{spec: "2G", want: 2 << 30},
		{spec: "1.5", bad: true},
		{spec: "absolute", bad: true},
		{spec: "12XB", bad: true},
		{spec: "50MB", want: 50e6, disk: true},
		{spec: "mem_relative 1.5", want: uint64(1.5 * float64(total)), disk: true},
		{spec: "mem_relative x", bad: true, disk: true},
		{spec: "1 2 3", bad: true, disk: true},
	} {
		parse := parseMemoryWatermark
		if tc.disk {
			parse = parseDiskFreeLimit
		}
		got, err := parse(tc.spec, total)
		if tc.bad {
			if err == nil {
				t.Errorf("%q: accepted as %d", tc.spec, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: got %d, %v; want %d", tc.spec, got, err, tc.want)
		}
	}
}
