package bench

import (
	"testing"
	"time"
)

// TestAggregate: the median repetition's throughput with the spread of all, and no
// p99 from fewer than 20 latency samples.
func TestAggregate(t *testing.T) {
	ms := func(n int) []time.Duration {
		d := make([]time.Duration, n)
		for i := range d {
			d[i] = time.Duration(i+1) * time.Millisecond
		}
		return d
	}
	ss := []*sample{
		{items: 100, secs: 1, lat: ms(5), walBytes: 1000, allocs: 500},
		{items: 100, secs: 4, lat: ms(5), walBytes: 3000, allocs: 700},
		{items: 100, secs: 2, lat: ms(5), walBytes: 2000, allocs: 600},
	}
	r := aggregate(Result{}, ss)
	if r.Throughput != 50 || r.ThroughputMin != 25 || r.ThroughputMax != 100 || r.Reps != 3 {
		t.Errorf("throughput %v (%v–%v) over %d reps, want 50 (25–100) over 3", r.Throughput, r.ThroughputMin, r.ThroughputMax, r.Reps)
	}
	if r.WALBytesPerItem != 20 || r.AllocsPerItem != 6 {
		t.Errorf("per item: WAL %v, allocs %v; want 20 and 6", r.WALBytesPerItem, r.AllocsPerItem)
	}
	if r.Samples != 15 || r.P99Ms != 0 || fmtP99(r) != "n/a" {
		t.Errorf("p99 from %d samples: %v (%s), want n/a", r.Samples, r.P99Ms, fmtP99(r))
	}
	ss[0].lat = ms(20)
	if r := aggregate(Result{}, ss); r.P99Ms == 0 || fmtP99(r) == "n/a" {
		t.Errorf("p99 from %d samples: %v, want a value", r.Samples, r.P99Ms)
	}
}

// TestFindBestConfiguration: a ratio is taken against the baseline's best configuration.
func TestFindBestConfiguration(t *testing.T) {
	results := []Result{
		{Scenario: "e2e", Variant: "chains", System: SystemOrkstate, Throughput: 1000},
		{Scenario: "e2e", Variant: "chains", System: SystemOrkV1, Config: "batch 100", Throughput: 50},
		{Scenario: "e2e", Variant: "chains", System: SystemOrkV1, Config: "batch 1000", Throughput: 100},
		{Scenario: "e2e", Variant: "chains", System: SystemOrkV1, Config: "4 schedulers", Throughput: 200, Duplicates: 30},
		{Scenario: "e2e", Variant: "chains", System: SystemFloor, Throughput: 2000},
	}
	computeRatios(results)
	if got := results[0].Ratios["x "+SystemOrkV1]; got != 10 {
		t.Errorf("x ork-v1 = %v, want 10 (against its best configuration that ran nothing twice)", got)
	}
	if got := results[0].Ratios["time ÷ "+SystemFloor]; got != 2 {
		t.Errorf("time ÷ floor = %v, want 2", got)
	}
}
