package bench

import (
	"context"
	"fmt"
	"time"
)

// runFailures: the chains DAG where 10% of tasks fail their first attempt and are
// retried (after the 1 s backoff both stores use), and one run in 20 is cancelled
// when its first task is claimed — on orkstate and on ork-v1's scheduler loop.
func runFailures(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "failures"
	plan := failurePlan{failEvery: 10, cancelEvery: 20}
	variant := "10% fail once, 1 run in 20 cancelled"
	shape := chainsShape()
	note := func(o *e2eOutcome) string {
		return fmt.Sprintf("%d first attempts failed, %d runs cancelled", o.failedOnce, o.cancelled)
	}
	r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkstate, Unit: "tasks",
		LatencyOf: "run created → finished", Note: fmt.Sprintf("%d runs of %d tasks, %d schedulers", sz.FailureRuns, len(shape.specs), sz.Schedulers)},
		func(int) (*sample, error) {
			smp, o, err := r.runOrkstateE2E(ctx, shape, sz.FailureRuns, plan)
			if err == nil && smp.note == "" {
				smp.note = note(o)
			}
			return smp, err
		})
	for _, batch := range sz.FailureV1Batches {
		r.measure(Result{Scenario: sc, Variant: variant, System: SystemOrkV1, Unit: "tasks", Config: fmt.Sprintf("1 scheduler, batch %d", batch),
			LatencyOf: "run created → finished", Note: fmt.Sprintf("%d runs (fewer: it is slow)", sz.FailureV1Runs)},
			func(int) (*sample, error) {
				smp, o, err := r.runV1E2E(ctx, shape, sz.FailureV1Runs, 1, batch, plan)
				if err == nil && smp.note == "" {
					smp.note = note(o)
				}
				return smp, err
			})
	}
	return nil
}

// runOpenLoop: runs of the chains DAG arriving at a fixed rate — each load a fraction
// of the rate the closed-loop e2e measured — for OpenLoopSeconds; latency from a run's
// creation to its end. A closed-loop drain hides queueing; this shows it.
func runOpenLoop(ctx context.Context, r *runner) error {
	sz := r.sizes
	const sc = "open_loop"
	shape := chainsShape()
	maxRuns := 0.0
	if e := find(r.results, "e2e", shape.name, SystemOrkstate, false); e != nil && e.Variant == shape.name {
		maxRuns = e.Throughput / float64(len(shape.specs))
	}
	if maxRuns <= 0 {
		s, _, err := r.runOrkstateE2E(ctx, shape, max(2, sz.E2ERuns/2), failurePlan{})
		if err != nil {
			return err
		}
		maxRuns = float64(s.items) / s.secs / float64(len(shape.specs))
	}
	for _, load := range sz.OpenLoopLoads {
		rate := load * maxRuns
		runs := max(2, int(rate*sz.OpenLoopSeconds))
		interval := time.Duration(float64(time.Second) / rate)
		r.measure(Result{Scenario: sc, Variant: fmt.Sprintf("%.0f%% of max", load*100), System: SystemOrkstate,
			Unit: "tasks", LatencyOf: "run created → finished",
			Note: fmt.Sprintf("chains runs arriving every %s (%.1f runs/s) for %.0fs; max %.1f runs/s from the closed-loop e2e", interval.Round(time.Millisecond), rate, sz.OpenLoopSeconds, maxRuns)},
			func(int) (*sample, error) {
				smp, _, err := r.runOrkstateE2E(ctx, shape, runs, failurePlan{interval: interval})
				return smp, err
			})
	}
	if !sz.OpenLoopV1 {
		return nil
	}
	// ork-v1 at the same fractions of its own maximum (its one scheduler at its default batch).
	v1Max := 0.0
	for _, res := range r.results {
		if res.Scenario == "e2e" && res.Variant == shape.name && res.System == SystemOrkV1 && res.Config == (v1Config{1, 100}).String() && res.Error == "" {
			v1Max = res.Throughput / float64(len(shape.specs))
		}
	}
	if v1Max <= 0 {
		r.missing = append(r.missing, "open loop on ork-v1: needs the e2e scenario's ork-v1 maximum")
		return nil
	}
	for _, load := range sz.OpenLoopLoads {
		rate := load * v1Max
		runs := max(2, int(rate*sz.OpenLoopSeconds))
		interval := time.Duration(float64(time.Second) / rate)
		r.measure(Result{Scenario: sc, Variant: fmt.Sprintf("%.0f%% of max", load*100), System: SystemOrkV1, Config: (v1Config{1, 100}).String(),
			Unit: "tasks", LatencyOf: "run created → finished",
			Note: fmt.Sprintf("chains runs arriving every %s (%.1f runs/s) for %.0fs; its max %.1f runs/s from the closed-loop e2e", interval.Round(time.Millisecond), rate, sz.OpenLoopSeconds, v1Max)},
			func(int) (*sample, error) {
				smp, _, err := r.runV1E2E(ctx, shape, runs, 1, 100, failurePlan{interval: interval})
				return smp, err
			})
	}
	return nil
}
