package bench

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// The server_settings scenario: what the settings a DBA would set change for the e2e
// DAG and for batch success with propagation — throughput and WAL bytes per item, side
// by side. Each configuration is applied server-wide (ALTER SYSTEM + pg_reload_conf(),
// all three are reloadable), measured, and put back as it was (ALTER SYSTEM RESET, or
// the earlier value when postgresql.auto.conf had one), on failure too. WAL is the
// server's (other sessions' writes count: measure on a quiet server), and checkpoints
// are counted over the measured part from pg_stat_bgwriter.

// serverConfig is one configuration measured.
type serverConfig struct {
	settings [][2]string // name, value, in the order applied
	// checkpointFirst issues CHECKPOINT before each measured part: every page's first
	// change then carries a full-page image, the worst case of WAL per item.
	checkpointFirst bool
	// window, when set, repeats the workload back to back for at least this long per
	// repetition, so that time-driven checkpoints fall inside it.
	window time.Duration
}

func (c serverConfig) String() string {
	if len(c.settings) == 0 {
		return "server defaults"
	}
	parts := make([]string, len(c.settings))
	for i, s := range c.settings {
		parts[i] = s[0] + "=" + s[1]
	}
	return strings.Join(parts, ", ")
}

// label is the configuration with how it was measured.
func (c serverConfig) label() string {
	l := c.String()
	if c.checkpointFirst {
		l += ", right after a CHECKPOINT"
	}
	if c.window > 0 {
		l += fmt.Sprintf(", %.0f s sustained", c.window.Seconds())
	}
	return l
}

// baseline is the configuration the ratios of c compare with: the server defaults
// measured the same way.
func (c serverConfig) baseline() string {
	return serverConfig{checkpointFirst: c.checkpointFirst, window: c.window}.label()
}

// serverConfigs: compression (off, lz4, pglz) in the steady state and right after a
// checkpoint; a max_wal_size so small that WAL volume forces checkpoints inside the
// run (what an undersized max_wal_size costs); the recommended combination. Full mode
// adds checkpoint_timeout, which needs runs longer than the timeout to show: 70 s of
// sustained work at the 30 s minimum against the 5 min default.
func serverConfigs(sz Sizes) []serverConfig {
	lz4 := [2]string{"wal_compression", "lz4"}
	cs := []serverConfig{
		{},
		{settings: [][2]string{lz4}},
		{settings: [][2]string{{"wal_compression", "pglz"}}},
		{checkpointFirst: true},
		{settings: [][2]string{lz4}, checkpointFirst: true},
		{settings: [][2]string{{"max_wal_size", "32MB"}}},
		{settings: [][2]string{{"max_wal_size", "32MB"}, lz4}},
		{settings: [][2]string{lz4, {"max_wal_size", "4GB"}, {"checkpoint_timeout", "15min"}}},
	}
	if sz.OpenLoopSeconds >= 10 {
		w := 70 * time.Second
		cs = append(cs,
			serverConfig{window: w},
			serverConfig{settings: [][2]string{{"checkpoint_timeout", "30s"}}, window: w},
			serverConfig{settings: [][2]string{{"checkpoint_timeout", "30s"}, lz4}, window: w})
	}
	return cs
}

// runServerSettings measures e2e (chains) and batch success (one reporter) under each
// configuration of serverConfigs.
func runServerSettings(ctx context.Context, r *runner) error {
	const sc = "server_settings"
	sz := r.sizes
	if sz.OpenLoopSeconds < 10 {
		r.missing = append(r.missing, "server settings: checkpoint_timeout needs runs longer than its 30 s minimum (full mode)")
	}
	defer r.checkAutovacuumOff(ctx)
	base := map[string]*Result{}
	for _, cfg := range serverConfigs(sz) {
		restore, err := r.applySettings(ctx, cfg.settings)
		if err != nil {
			return err
		}
		workloads := []struct {
			name, unit, latOf string
			once              func() (*sample, error)
		}{
			{"e2e chains", "tasks", "run created → finished", func() (*sample, error) {
				smp, _, err := r.runOrkstateE2E(ctx, chainsShape(), sz.E2ERuns, failurePlan{})
				return smp, err
			}},
			{fmt.Sprintf("batch success, batch %d", sz.BatchSize), "transitions", fmt.Sprintf("set_task_states call of %d", sz.BatchSize), func() (*sample, error) {
				return r.batchSuccessOnce(ctx)
			}},
		}
		// A sustained window is measured once, on e2e alone: each is 70 s of work, and
		// three repetitions of two workloads under three configurations were 21 minutes
		// of make bench-full.
		if cfg.window > 0 {
			workloads = workloads[:1]
		}
		for _, w := range workloads {
			res := Result{Scenario: sc, Variant: w.name + " · " + cfg.label(), System: SystemOrkstate, Unit: w.unit, LatencyOf: w.latOf}
			once := func(int) (*sample, error) { return r.settingsRep(ctx, cfg, w.once) }
			if cfg.window > 0 {
				r.measureReps(res, 1, once)
			} else {
				r.measure(res, once)
			}
			got := r.results[len(r.results)-1]
			key := w.name + " · " + cfg.baseline()
			if len(cfg.settings) == 0 {
				base[key] = &got
			} else if b := base[key]; b != nil && got.Error == "" && b.Throughput > 0 && b.WALBytesPerItem > 0 {
				r.results[len(r.results)-1].Ratios = map[string]float64{
					"÷ defaults":     round2(got.Throughput / b.Throughput),
					"WAL ÷ defaults": round2(got.WALBytesPerItem / b.WALBytesPerItem),
				}
			}
		}
		restore()
	}
	return nil
}

// settingsRep is one repetition of a workload under cfg: once, or back to back until
// cfg.window has passed (the samples summed), after a CHECKPOINT when cfg asks, with
// the checkpoints that happened noted.
func (r *runner) settingsRep(ctx context.Context, cfg serverConfig, once func() (*sample, error)) (*sample, error) {
	ckpts := func() (n int64) {
		_ = r.pool.QueryRow(ctx, `select checkpoints_timed + checkpoints_req from pg_stat_bgwriter`).Scan(&n)
		return n
	}
	if cfg.checkpointFirst {
		if _, err := r.pool.Exec(ctx, "checkpoint"); err != nil {
			return nil, err
		}
	}
	c0 := ckpts()
	total := &sample{}
	start := time.Now()
	for {
		smp, err := once()
		if err != nil {
			return nil, err
		}
		total.items += smp.items
		total.secs += smp.secs
		total.walBytes += smp.walBytes
		total.allocs += smp.allocs
		total.lat = append(total.lat, smp.lat...)
		total.dups += smp.dups
		total.lost += smp.lost
		if total.note == "" {
			total.note = smp.note
		}
		if time.Since(start) >= cfg.window {
			break
		}
	}
	note := total.note
	total.note = fmt.Sprintf("%d checkpoints during the repetition (%.0f s)", ckpts()-c0, time.Since(start).Seconds())
	if note != "" {
		total.note += "; " + note
	}
	return total, nil
}

// batchSuccessOnce is batch_status's orkstate measurement with one reporter: chains
// reported success level by level in calls of BatchSize.
func (r *runner) batchSuccessOnce(ctx context.Context) (*sample, error) {
	sz := r.sizes
	runs, perRun, links := chainLayout(sz.BatchTasks, sz.BatchSize)
	w := runs * perRun
	n := w * links
	s, first, drop, err := r.installChains(ctx, runs, perRun, links)
	if err != nil {
		return nil, err
	}
	defer drop()
	notApplied := 0
	m := r.startMeter(ctx)
	lat, err := reportLevels(ctx, 1, links, w, first, func(ctx context.Context, ids []int64) error {
		missed, err := reportSuccesses(ctx, s, ids)
		notApplied += missed
		return err
	})
	smp := &sample{items: n, lat: lat, dups: notApplied}
	m.stop(smp)
	return smp, err
}

// applySettings sets each setting server-wide (ALTER SYSTEM, then a reload), waits
// until a new statement sees the values, and returns the function that puts every
// one back as it was: RESET, or the value postgresql.auto.conf held before.
func (r *runner) applySettings(ctx context.Context, settings [][2]string) (func(), error) {
	type prev struct {
		name, value string
		inAutoConf  bool
	}
	var prevs []prev
	restore := func() {
		ctx := context.WithoutCancel(ctx)
		for i := len(prevs) - 1; i >= 0; i-- {
			p := prevs[i]
			stmt := "alter system reset " + p.name
			if p.inAutoConf {
				stmt = fmt.Sprintf("alter system set %s = '%s'", p.name, strings.ReplaceAll(p.value, "'", "''"))
			}
			if _, err := r.pool.Exec(ctx, stmt); err != nil {
				r.logf("    could not restore %s (was %s): %v", p.name, p.value, err)
			}
		}
		if len(prevs) > 0 {
			if _, err := r.pool.Exec(ctx, "select pg_reload_conf()"); err != nil {
				r.logf("    reload after restoring settings: %v", err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	for _, s := range settings {
		var p prev
		p.name = s[0]
		if err := r.pool.QueryRow(ctx, `select coalesce((select f.setting from pg_file_settings f
				where f.name = $1 and f.sourcefile like '%postgresql.auto.conf' and f.applied), ''),
			exists (select 1 from pg_file_settings f where f.name = $1 and f.sourcefile like '%postgresql.auto.conf')`, s[0]).
			Scan(&p.value, &p.inAutoConf); err != nil {
			restore()
			return nil, err
		}
		if _, err := r.pool.Exec(ctx, fmt.Sprintf("alter system set %s = '%s'", s[0], s[1])); err != nil {
			restore()
			return nil, fmt.Errorf("alter system set %s (needs a superuser): %w", s[0], err)
		}
		prevs = append(prevs, p)
	}
	if len(settings) == 0 {
		return restore, nil
	}
	if _, err := r.pool.Exec(ctx, "select pg_reload_conf()"); err != nil {
		restore()
		return nil, err
	}
	// Each backend reads the file when it next goes idle after the signal.
	deadline := time.Now().Add(5 * time.Second)
	for _, s := range settings {
		for {
			var v string
			if err := r.pool.QueryRow(ctx, `select current_setting($1)`, s[0]).Scan(&v); err != nil {
				restore()
				return nil, err
			}
			if settingMatches(v, s[1]) || time.Now().After(deadline) {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	time.Sleep(200 * time.Millisecond) // the pool's other connections and the checkpointer
	r.logf("    server settings: %s", serverConfig{settings: settings})
	return restore, nil
}

// settingMatches compares a current_setting with the value set (as written in
// serverConfigs: the units current_setting prints).
func settingMatches(got, want string) bool {
	return strings.EqualFold(strings.ReplaceAll(got, " ", ""), strings.ReplaceAll(want, " ", ""))
}

// checkAutovacuumOff logs, after a scenario that changed server settings, whether
// autovacuum is off as the bench expects.
func (r *runner) checkAutovacuumOff(ctx context.Context) {
	var av string
	if err := r.pool.QueryRow(context.WithoutCancel(ctx), "select current_setting('autovacuum')").Scan(&av); err == nil && av != "off" {
		r.logf("    note: autovacuum is %s after the server-settings scenario (it was not changed here)", av)
	}
}
