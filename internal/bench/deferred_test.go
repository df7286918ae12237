package bench

import "testing"

// TestDeferredTargets: the triggerer's throughput over River's in the deferred
// scenario's own rows (not the e2e scenario's River row, which has another job
// count), and the open loop's p99.
func TestDeferredTargets(t *testing.T) {
	results := []Result{
		{Scenario: "e2e", Variant: "no-op jobs", System: SystemRiver, Items: 10000, Throughput: 20000},
		{Scenario: "deferred", Variant: deferredVariant, System: SystemOrkstate, Items: 5000, Throughput: 30000},
		{Scenario: "deferred", Variant: deferredVariant, System: SystemTriggerer, Items: 5000, Throughput: 6000},
		{Scenario: "deferred", Variant: deferredVariant, System: SystemRiver, Items: 5000, Throughput: 10000},
		{Scenario: "deferred", Variant: "50% of max", System: SystemTriggerer, Items: 6000, Throughput: 3000, P50Ms: 9, P99Ms: 60},
	}
	ts := checkTargets(results)
	got := map[string]Target{}
	for _, tg := range ts {
		got[tg.Want] = tg
	}
	if r := got["≥ 0.5×"]; r.Value != 0.6 || !r.Met {
		t.Errorf("ratio target %+v, want 0.6 met (6,000 over the deferred scenario's 10,000)", r)
	}
	if l := got["≤ 50"]; l.Value != 60 || l.Met {
		t.Errorf("latency target %+v, want 60 missed", l)
	}
	if n := len(deferredTargets(results[:3])); n != 0 {
		t.Errorf("%d targets without the deferred scenario's River row, want none", n)
	}
}
