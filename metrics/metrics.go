// Package metrics exports an orkstate install's figures and the Go side's claim
// and report latencies as Prometheus metrics (github.com/prometheus/client_golang).
//
// A Metrics is a prometheus.Collector: register it with a registry and serve the
// registry's handler (see the package example). The install's figures are read
// from <schema>_api.stats() on each scrape — a call that reads indexes and
// counters only, so scraping costs the same on an install with months of history
// as on a fresh one. The latencies are recorded by the Store that Instrument
// returns, around every ClaimTasks, SetTaskStates and UpdateTaskStatus call.
package metrics

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/pgstore"
)

// StatsSource reads an install's figures; *pgstore.Store is one.
type StatsSource interface {
	Stats(ctx context.Context, window time.Duration) (*pgstore.Stats, error)
}

// Config configures Metrics. The zero value works.
type Config struct {
	// ConstLabels are added to every metric, e.g. {"schema": "ork"} when one
	// process serves several installs. Defaults to none.
	ConstLabels prometheus.Labels
	// LatencyBuckets are the histogram buckets of the claim and report latencies,
	// in seconds. Defaults to 0.5 ms … 4 s, doubling.
	LatencyBuckets []float64
	// Namespace prefixes every metric name. Defaults to "orkstate".
	Namespace string
	// ScrapeTimeout bounds the stats() call of one scrape. Defaults to 5 seconds.
	ScrapeTimeout time.Duration
	// Window is how far back the finished-runs gauges count. Defaults to 1 hour.
	Window time.Duration
}

func (c *Config) withDefaults() Config {
	out := Config{}
	if c != nil {
		out = *c
	}
	if out.Namespace == "" {
		out.Namespace = "orkstate"
	}
	if out.ScrapeTimeout == 0 {
		out.ScrapeTimeout = 5 * time.Second
	}
	if out.Window == 0 {
		out.Window = time.Hour
	}
	if len(out.LatencyBuckets) == 0 {
		out.LatencyBuckets = prometheus.ExponentialBuckets(0.0005, 2, 14)
	}
	return out
}

func (c Config) validate() error {
	if c.ScrapeTimeout < 0 {
		return orkstate.Invalid("ScrapeTimeout", c.ScrapeTimeout, "must not be negative")
	}
	if c.Window < 0 {
		return orkstate.Invalid("Window", c.Window, "must not be negative")
	}
	return nil
}

// gauge is one figure of stats(): its description and how to read it.
type gauge struct {
	desc  *prometheus.Desc
	value func(*pgstore.Stats) float64
}

// Metrics collects an install's figures and the Go side's latencies. It is safe
// for concurrent use.
type Metrics struct {
	src     StatsSource
	cfg     Config
	gauges  []gauge
	runs    *prometheus.Desc
	up      *prometheus.Desc
	took    *prometheus.Desc
	claim   *prometheus.HistogramVec
	report  *prometheus.HistogramVec
	both    *prometheus.HistogramVec
	claimed prometheus.Counter
}

// New returns Metrics reading src on every scrape (src may be nil: then only the
// latencies are exported).
func New(src StatsSource, cfg *Config) (*Metrics, error) {
	c := cfg.withDefaults()
	if err := c.validate(); err != nil {
		return nil, err
	}
	name := func(n string) string { return prometheus.BuildFQName(c.Namespace, "", n) }
	desc := func(n, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name(n), help, labels, c.ConstLabels)
	}
	g := func(n, help string, value func(*pgstore.Stats) float64) gauge {
		return gauge{desc(n, help), value}
	}
	m := &Metrics{src: src, cfg: c}
	m.gauges = []gauge{
		g("ready_tasks", "Tasks a claim could take now.", func(s *pgstore.Stats) float64 { return float64(s.ReadyTasks) }),
		g("delayed_tasks", "Ready tasks waiting for their retry time.", func(s *pgstore.Stats) float64 { return float64(s.DelayedTasks) }),
		g("oldest_ready_age_seconds", "How long the head of the queue has been ready (0: nothing ready).",
			func(s *pgstore.Stats) float64 { return s.OldestReadyAge.Seconds() }),
		g("tasks_in_flight", "Dispatched or running tasks.", func(s *pgstore.Stats) float64 { return float64(s.TasksInFlight) }),
		g("tasks_unfinished", "Tasks of unfinished runs not yet finished.", func(s *pgstore.Stats) float64 { return float64(s.TasksUnfinished) }),
		g("leases_due", "Lease rows (one per claim batch) past their end, not yet swept.", func(s *pgstore.Stats) float64 { return float64(s.LeasesDue) }),
		g("deadlines_due", "Tasks past their timeout, not yet failed by the sweep.", func(s *pgstore.Stats) float64 { return float64(s.DeadlinesDue) }),
		g("runs_estimate", "All runs, history included: the planner's estimate (-1 before ANALYZE).",
			func(s *pgstore.Stats) float64 { return float64(s.RunsEstimate) }),
		g("deferred_jobs_active", "Pending or polling deferred jobs.", func(s *pgstore.Stats) float64 { return float64(s.DeferredJobsActive) }),
		g("deferred_jobs_due", "Deferred jobs due a poll.", func(s *pgstore.Stats) float64 { return float64(s.DeferredJobsDue) }),
	}
	m.runs = desc("runs", "Runs by status: pending, running and paused all; success, failed and cancelled finished within the window.", "status")
	m.up = desc("stats_up", "1 when the last scrape read stats(), else 0.")
	m.took = desc("stats_scrape_seconds", "How long the scrape's stats() call took.")
	m.claim = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: c.Namespace, Name: "claim_duration_seconds",
		Help: "ClaimTasks latency seen by this process, by outcome (ok, empty, error).", Buckets: c.LatencyBuckets, ConstLabels: c.ConstLabels},
		[]string{"outcome"})
	m.report = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: c.Namespace, Name: "report_duration_seconds",
		Help: "SetTaskStates and UpdateTaskStatus latency seen by this process, by outcome (ok, error).", Buckets: c.LatencyBuckets,
		ConstLabels: c.ConstLabels}, []string{"outcome"})
	m.both = prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: c.Namespace, Name: "report_and_claim_duration_seconds",
		Help:    "ReportAndClaim latency seen by this process (a scheduler loop's report and claim in one call), by outcome (ok, empty, error).",
		Buckets: c.LatencyBuckets, ConstLabels: c.ConstLabels}, []string{"outcome"})
	m.claimed = prometheus.NewCounter(prometheus.CounterOpts{Namespace: c.Namespace, Name: "tasks_claimed_total",
		Help: "Tasks claimed by this process.", ConstLabels: c.ConstLabels})
	return m, nil
}

// Describe implements prometheus.Collector.
func (m *Metrics) Describe(ch chan<- *prometheus.Desc) {
	for _, g := range m.gauges {
		ch <- g.desc
	}
	ch <- m.runs
	ch <- m.up
	ch <- m.took
	m.claim.Describe(ch)
	m.report.Describe(ch)
	m.both.Describe(ch)
	m.claimed.Describe(ch)
}

// Collect implements prometheus.Collector: it reads stats() once per scrape. A
// failed read exports stats_up 0 and no figures, never stale ones.
func (m *Metrics) Collect(ch chan<- prometheus.Metric) {
	m.claim.Collect(ch)
	m.report.Collect(ch)
	m.both.Collect(ch)
	m.claimed.Collect(ch)
	if m.src == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.cfg.ScrapeTimeout)
	defer cancel()
	start := time.Now()
	st, err := m.src.Stats(ctx, m.cfg.Window)
	ch <- prometheus.MustNewConstMetric(m.took, prometheus.GaugeValue, time.Since(start).Seconds())
	if err != nil {
		ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, 0)
		return
	}
	ch <- prometheus.MustNewConstMetric(m.up, prometheus.GaugeValue, 1)
	for _, g := range m.gauges {
		ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, g.value(st))
	}
	for status, n := range map[string]int64{"pending": st.RunsPending, "running": st.RunsRunning, "paused": st.RunsPaused,
		"success": st.RunsSucceeded, "failed": st.RunsFailed, "cancelled": st.RunsCancelled} {
		ch <- prometheus.MustNewConstMetric(m.runs, prometheus.GaugeValue, float64(n), status)
	}
}

// Instrument returns st with its ClaimTasks, SetTaskStates and UpdateTaskStatus
// calls timed into the claim and report histograms, and ReportAndClaim into its own;
// every other call goes to st unchanged. What st implements beyond Store
// (orkstate.ReportClaimer, orkstate.Purger) the result implements too, so a
// scheduler loop that checks for ReportClaimer keeps its one-call path.
func (m *Metrics) Instrument(st orkstate.Store) orkstate.Store {
	i := &instrumented{Store: st, m: m}
	rc, isRC := st.(orkstate.ReportClaimer)
	p, isP := st.(orkstate.Purger)
	switch {
	case isRC && isP:
		return struct {
			reportClaimer
			orkstate.Purger
		}{reportClaimer{i, rc}, p}
	case isRC:
		return reportClaimer{i, rc}
	case isP:
		return struct {
			*instrumented
			orkstate.Purger
		}{i, p}
	}
	return i
}

type instrumented struct {
	orkstate.Store
	m *Metrics
}

// reportClaimer is an instrumented store whose store reports and claims in one call.
type reportClaimer struct {
	*instrumented
	rc orkstate.ReportClaimer
}

func (r reportClaimer) ReportAndClaim(ctx context.Context, updates []orkstate.TaskUpdate, p orkstate.ClaimParams) ([]orkstate.TaskOutcome, []orkstate.ClaimedTask, error) {
	start := time.Now()
	out, got, err := r.rc.ReportAndClaim(ctx, updates, p)
	r.m.both.WithLabelValues(claimOutcome(len(got), err)).Observe(time.Since(start).Seconds())
	r.m.claimed.Add(float64(len(got)))
	return out, got, err
}

// claimOutcome is a claim's histogram label: error, empty (nothing to claim) or ok.
func claimOutcome(n int, err error) string {
	switch {
	case err != nil:
		return "error"
	case n == 0:
		return "empty"
	}
	return "ok"
}

func (i *instrumented) ClaimTasks(ctx context.Context, p orkstate.ClaimParams) ([]orkstate.ClaimedTask, error) {
	start := time.Now()
	got, err := i.Store.ClaimTasks(ctx, p)
	i.m.claim.WithLabelValues(claimOutcome(len(got), err)).Observe(time.Since(start).Seconds())
	i.m.claimed.Add(float64(len(got)))
	return got, err
}

func (i *instrumented) SetTaskStates(ctx context.Context, updates []orkstate.TaskUpdate) ([]orkstate.TaskOutcome, error) {
	start := time.Now()
	out, err := i.Store.SetTaskStates(ctx, updates)
	i.m.observeReport(start, err)
	return out, err
}

func (i *instrumented) UpdateTaskStatus(ctx context.Context, u orkstate.TaskUpdate) (*orkstate.TaskOutcome, error) {
	start := time.Now()
	out, err := i.Store.UpdateTaskStatus(ctx, u)
	i.m.observeReport(start, err)
	return out, err
}

func (m *Metrics) observeReport(start time.Time, err error) {
	outcome := "ok"
	if err != nil {
		outcome = "error"
	}
	m.report.WithLabelValues(outcome).Observe(time.Since(start).Seconds())
}
