package bench

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sort"
	"time"
)

// minP99Samples is the fewest latency samples a p99 is printed from: below it the
// 99th percentile is just the largest sample, and the table says n/a.
const minP99Samples = 20

// sample is one repetition of a measurement.
type sample struct {
	items      int
	secs       float64
	lat        []time.Duration
	dups, lost int
	walBytes   float64
	allocs     float64
	cpuMicros  float64 // the machine's busy CPU time (every process: server, bench, others), µs
	goCPU      float64 // this process's CPU time, µs
	diskBytes  float64 // on-disk size of the system's tables after the repetition; 0: not measured
	diskItems  int     // finished tasks (or jobs) diskBytes holds
	note       string
}

// meter is the clock of one repetition: wall time, WAL written (the server's, so
// other sessions' writes count too: measure on a quiet server), the CPU time the
// machine was busy (the same caveat) and this process's share of it, and Go
// allocations of this process.
type meter struct {
	r       *runner
	ctx     context.Context
	lsn     string
	mallocs uint64
	busy    time.Duration
	self    time.Duration
	start   time.Time
}

// startMeter reads the WAL position and the allocation count, then starts the clock.
func (r *runner) startMeter(ctx context.Context) *meter {
	m := &meter{r: r, ctx: ctx}
	_ = r.pool.QueryRow(ctx, "select pg_current_wal_lsn()::text").Scan(&m.lsn)
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	m.mallocs = ms.Mallocs
	m.busy, _ = machineBusy()
	m.self = processCPU()
	m.start = time.Now()
	return m
}

// stop stops the clock and fills the sample's time, WAL bytes and allocations.
func (m *meter) stop(s *sample) {
	s.secs = time.Since(m.start).Seconds()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	s.allocs = float64(ms.Mallocs - m.mallocs)
	if busy, ok := machineBusy(); ok && m.busy > 0 {
		s.cpuMicros = float64((busy - m.busy).Microseconds())
		s.goCPU = float64((processCPU() - m.self).Microseconds())
	}
	if m.lsn != "" {
		_ = m.r.pool.QueryRow(m.ctx, "select pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8", m.lsn).Scan(&s.walBytes)
	}
}

// diskSize is the on-disk size of every table of the schemas (heap, indexes, TOAST).
func (r *runner) diskSize(ctx context.Context, schemas ...string) (float64, error) {
	var b float64
	err := r.pool.QueryRow(ctx, `
		select coalesce(sum(pg_total_relation_size(c.oid)), 0)::float8
		from pg_class c join pg_namespace n on n.oid = c.relnamespace
		where n.nspname = any($1) and c.relkind in ('r', 'm')`, schemas).Scan(&b)
	return b, err
}

// measure runs once Reps times and records the aggregate as one Result: the median
// repetition's throughput with the spread of all, p50/p99 over every latency sample
// (p99 only from minP99Samples or more), and per item the median WAL bytes,
// allocations and on-disk bytes. A repetition that fails records the error instead.
func (r *runner) measure(base Result, once func(rep int) (*sample, error)) {
	r.measureReps(base, r.sizes.Reps, once)
}

// measureReps is measure with its own number of repetitions (at least 1).
func (r *runner) measureReps(base Result, reps int, once func(rep int) (*sample, error)) {
	reps = max(1, reps)
	var ss []*sample
	for i := 0; i < reps; i++ {
		s, err := once(i)
		if err != nil {
			base.Error = err.Error()
			r.add(base)
			return
		}
		ss = append(ss, s)
	}
	r.add(aggregate(base, ss))
}

func aggregate(base Result, ss []*sample) Result {
	res := base
	res.Reps = len(ss)
	tps := make([]float64, len(ss))
	var lat []time.Duration
	var wal, allocs, disk, cpu, goCPU []float64
	for i, s := range ss {
		if s.secs > 0 {
			tps[i] = float64(s.items) / s.secs
		}
		lat = append(lat, s.lat...)
		res.Duplicates += s.dups
		res.Losses += s.lost
		if s.items > 0 {
			wal = append(wal, s.walBytes/float64(s.items))
			allocs = append(allocs, s.allocs/float64(s.items))
			if s.cpuMicros > 0 {
				cpu = append(cpu, s.cpuMicros/float64(s.items))
				goCPU = append(goCPU, s.goCPU/float64(s.items))
			}
		}
		if s.diskBytes > 0 && s.diskItems > 0 {
			disk = append(disk, s.diskBytes/float64(s.diskItems))
		}
		if s.note != "" && res.Note == "" {
			res.Note = s.note
		}
	}
	mid := medianIndex(tps)
	res.Items, res.Seconds, res.Throughput = ss[mid].items, ss[mid].secs, tps[mid]
	res.ThroughputMin, res.ThroughputMax = slices.Min(tps), slices.Max(tps)
	res.Samples = len(lat)
	res.P50Ms, res.P99Ms = percentiles(lat)
	if res.Samples < minP99Samples {
		res.P99Ms = 0
	}
	res.WALBytesPerItem = round2(median(wal))
	res.AllocsPerItem = round2(median(allocs))
	res.CPUMicrosPerItem = round2(median(cpu))
	res.GoCPUMicrosPerItem = round2(median(goCPU))
	res.DiskBytesPerItem = round2(median(disk))
	return res
}

// medianIndex is the index of the median value (the lower of the two middle ones).
func medianIndex(v []float64) int {
	idx := make([]int, len(v))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return v[idx[a]] < v[idx[b]] })
	return idx[(len(idx)-1)/2]
}

func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	return v[medianIndex(v)]
}

// spread formats a result's throughput range over its repetitions.
func spread(r Result) string {
	if r.Reps < 2 || r.ThroughputMax == 0 {
		return ""
	}
	return fmt.Sprintf("%s–%s", humanInt(r.ThroughputMin), humanInt(r.ThroughputMax))
}

// measureAlternating is measure for several variants compared in one run: each
// repetition measures every variant once, in an order that rotates by one per
// repetition, so each sees the same moments of a shared machine (run one after the
// other, a burst of load from elsewhere lands on one variant's every repetition).
// once(v, rep) measures variant v (bases[v]); a variant whose repetition fails is
// reported with its error and not measured again.
func (r *runner) measureAlternating(bases []Result, once func(v, rep int) (*sample, error)) {
	ss := make([][]*sample, len(bases))
	errs := make([]error, len(bases))
	for rep := range max(1, r.sizes.Reps) {
		for k := range bases {
			v := (k + rep) % len(bases)
			if errs[v] != nil {
				continue
			}
			s, err := once(v, rep)
			if err != nil {
				errs[v] = err
				continue
			}
			ss[v] = append(ss[v], s)
		}
	}
	for v, base := range bases {
		if errs[v] != nil {
			base.Error = errs[v].Error()
			r.add(base)
			continue
		}
		r.add(aggregate(base, ss[v]))
	}
}
