package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"
)

// CompareConfig describes a comparison of two brokers.
type CompareConfig struct {
	// A and B are the broker URIs.
	A, B string
	// Scenarios are run in order, each Rounds times against A then B.
	Scenarios []Scenario
	// Rounds is the number of A, B pairs per scenario; 0 means 3.
	Rounds int
	// Duration, when positive, overrides every scenario's run time.
	Duration time.Duration
	// Options, applied after each scenario's options, override them
	// (long flag names, as in scenario files).
	Options map[string]any
	// Progress receives the runs' progress lines and a line per run.
	Progress io.Writer
}

// CompareRow is the outcome of one scenario on both brokers.
type CompareRow struct {
	// Scenario is the scenario name.
	Scenario string `json:"scenario"`
	// ARates and BRates are the headline rates (Result.Throughput) of each
	// round; AP99 and BP99 the p99 latencies in ms.
	ARates []float64 `json:"a_rates"`
	BRates []float64 `json:"b_rates"`
	AP99   []float64 `json:"a_p99_ms"`
	BP99   []float64 `json:"b_p99_ms"`
	// ARate, BRate, AP99Median and BP99Median are the medians over rounds;
	// Ratio is ARate/BRate (0 when BRate is 0).
	ARate      float64 `json:"a_rate"`
	BRate      float64 `json:"b_rate"`
	Ratio      float64 `json:"ratio"`
	AP99Median float64 `json:"a_p99_median_ms"`
	BP99Median float64 `json:"b_p99_median_ms"`
}

// CompareResult is the outcome of Compare.
type CompareResult struct {
	// A and B are the broker URIs, passwords redacted.
	A string `json:"a"`
	B string `json:"b"`
	// Rounds is the number of rounds per scenario.
	Rounds int `json:"rounds"`
	// Rows holds one row per scenario run to completion.
	Rows []CompareRow `json:"rows"`
}

// Compare runs each scenario against A and B alternately (A, B, A, B, ...)
// for cc.Rounds rounds and summarises the medians. It stops at the first
// failed run and returns the rows completed so far with the error.
func Compare(ctx context.Context, cc CompareConfig) (CompareResult, error) {
	rounds := cc.Rounds
	if rounds <= 0 {
		rounds = 3
	}
	out := CompareResult{A: Redact(cc.A), B: Redact(cc.B), Rounds: rounds}
	if cc.A == "" || cc.B == "" {
		return out, fmt.Errorf("%w: compare needs two broker URIs", ErrConfig)
	}
	if len(cc.Scenarios) == 0 {
		return out, fmt.Errorf("%w: no scenarios to compare", ErrConfig)
	}
	for _, s := range cc.Scenarios {
		row := CompareRow{Scenario: s.Name}
		for round := 1; round <= rounds; round++ {
			for _, side := range []struct {
				label, uri string
				rates, p99 *[]float64
			}{
				{"A", cc.A, &row.ARates, &row.AP99},
				{"B", cc.B, &row.BRates, &row.BP99},
			} {
				cfg, err := s.Config()
				if err == nil {
					err = ApplyOptions(&cfg, cc.Options)
				}
				if err != nil {
					return out, fmt.Errorf("scenario %q: %w", s.Name, err)
				}
				cfg.URIs = []string{side.uri}
				cfg.ID = fmt.Sprintf("%s/%s/%d", s.Name, side.label, round)
				if cc.Duration > 0 {
					cfg.Duration = cc.Duration
				}
				cfg.Progress = cc.Progress
				if cc.Progress != nil {
					fmt.Fprintf(cc.Progress, "== %s: broker %s (%s), round %d of %d\n", s.Name, side.label, Redact(side.uri), round, rounds)
				}
				res, err := Run(ctx, cfg)
				if err != nil {
					return out, fmt.Errorf("scenario %q on broker %s, round %d: %w", s.Name, side.label, round, err)
				}
				*side.rates = append(*side.rates, res.Throughput())
				*side.p99 = append(*side.p99, res.Latency.P99)
			}
		}
		row.ARate, row.BRate = median(row.ARates), median(row.BRates)
		row.AP99Median, row.BP99Median = median(row.AP99), median(row.BP99)
		if row.BRate > 0 {
			row.Ratio = row.ARate / row.BRate
		}
		out.Rows = append(out.Rows, row)
	}
	return out, nil
}

// WriteCompareTable writes the comparison as an aligned table.
func WriteCompareTable(w io.Writer, cr *CompareResult) error {
	fmt.Fprintf(w, "A = %s\nB = %s\nmedian of %d rounds; rate = received msg/s (drain rate for backlogs)\n", cr.A, cr.B, cr.Rounds)
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "scenario\tA msg/s\tB msg/s\tA/B\tA p99 ms\tB p99 ms\t")
	for _, r := range cr.Rows {
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.3f\t%.3f\t\n", r.Scenario, r.ARate, r.BRate, r.Ratio, r.AP99Median, r.BP99Median)
	}
	return tw.Flush()
}

// WriteCompareJSON writes the comparison as indented JSON.
func WriteCompareJSON(w io.Writer, cr *CompareResult) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(cr)
}
