package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
)

func sampleResult() *Result {
	c := DefaultConfig()
	c.ID = "r1"
	c.URIs = []string{"amqp://guest:secret@h:5672/"}
	c.Confirm = 256
	c.Persistent = true
	h := NewHistogram()
	for i := int64(1); i <= 1000; i++ {
		h.Record(i * 1_000_000) // 1..1000 ms
	}
	return &Result{
		ID: "r1", Config: c.redacted(), Elapsed: 10, Sent: 1000, Confirmed: 990, Received: 980,
		SentRate: 100, ConfirmedRate: 99, ReceivedRate: 98, Latency: latencyOf(h),
	}
}

func TestLatencyOf(t *testing.T) {
	l := sampleResult().Latency
	for _, tc := range []struct {
		name      string
		got, want float64
	}{{"p50", l.P50, 500}, {"p95", l.P95, 950}, {"p99", l.P99, 990}, {"p99.9", l.P999, 999}, {"max", l.Max, 1000}, {"min", l.Min, 1}, {"mean", l.Mean, 500.5}} {
		if d := tc.got - tc.want; d > tc.want*0.01 || d < -tc.want*0.01 {
			t.Errorf("%s = %.3f ms, want %.3f", tc.name, tc.got, tc.want)
		}
	}
}

func TestWriteSummaryJSONAndCSV(t *testing.T) {
	r := sampleResult()
	var sum bytes.Buffer
	if err := WriteSummary(&sum, r); err != nil {
		t.Fatal(err)
	}
	s := sum.String()
	for _, want := range []string{`"r1"`, "confirmed", "990", "p99.9", "persistent=true", "confirm=256", "xxxxx"} {
		if !strings.Contains(s, want) {
			t.Errorf("summary lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "secret") {
		t.Error("summary leaks the password")
	}

	var js bytes.Buffer
	if err := WriteJSON(&js, r); err != nil {
		t.Fatal(err)
	}
	var back Result
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.Received != 980 || back.Latency.P99 != r.Latency.P99 || back.Config.Confirm != 256 || strings.Contains(js.String(), "secret") {
		t.Errorf("JSON round trip: %+v", back)
	}

	var cs bytes.Buffer
	if err := WriteCSV(&cs, r, r); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&cs).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || len(rows[0]) != len(csvHeader) || len(rows[1]) != len(csvHeader) {
		t.Fatalf("CSV shape %d rows", len(rows))
	}
	col := map[string]string{}
	for i, h := range rows[0] {
		col[h] = rows[1][i]
	}
	if col["received"] != "980" || col["confirm"] != "256" || col["id"] != "r1" {
		t.Errorf("CSV row %v", col)
	}
}

func TestThroughputPicksHeadlineRate(t *testing.T) {
	r := sampleResult()
	if got := r.Throughput(); got != 98 {
		t.Errorf("with consumers: %v", got)
	}
	r.Config.Consumers = 0
	if got := r.Throughput(); got != 99 {
		t.Errorf("confirms, no consumers: %v", got)
	}
	r.Config.Confirm = 0
	if got := r.Throughput(); got != 100 {
		t.Errorf("no confirms, no consumers: %v", got)
	}
	r.Config.Consumers = 1
	r.Backlog = &BacklogResult{PublishRate: 7, DrainRate: 11}
	if got := r.Throughput(); got != 11 {
		t.Errorf("backlog: %v", got)
	}
}

func TestMedian(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want float64
	}{{nil, 0}, {[]float64{3}, 3}, {[]float64{5, 1, 3}, 3}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCompareTable(t *testing.T) {
	cr := &CompareResult{A: "a", B: "b", Rounds: 3, Rows: []CompareRow{{Scenario: "s1", ARate: 2000, BRate: 1000, Ratio: 2, AP99Median: 1.5, BP99Median: 3}}}
	var buf bytes.Buffer
	if err := WriteCompareTable(&buf, cr); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"scenario", "A/B", "s1", "2000", "1000", "2.00", "1.500", "3.000"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
