package bench

import (
	"encoding/json"
	"fmt"
	"html"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
)

// baselines are the systems orkstate is compared with, in display order.
var baselines = []string{SystemOrkV1, SystemRiver, SystemGraphile, SystemTriggerer, SystemFloor, SystemRaw, SystemSQLite}

// find returns the successful result of system in scenario for variant: of several
// (a baseline's configurations) the one with the best throughput, or with latency the
// lowest p50. With none of that variant it looks at the whole scenario. A baseline's
// configuration that ran work twice (ork-v1's extra schedulers, without SKIP LOCKED)
// is not a configuration to compare with.
func find(results []Result, scenario, variant, system string, byLatency bool) *Result {
	better := func(a, b *Result) bool {
		if byLatency {
			return a.P50Ms > 0 && a.P50Ms < b.P50Ms
		}
		return a.Throughput > b.Throughput
	}
	var best, bestAny *Result
	for i := range results {
		r := &results[i]
		if r.Scenario != scenario || r.System != system || r.Error != "" || system != SystemOrkstate && r.Duplicates > 0 {
			continue
		}
		if r.Variant == variant && (best == nil || better(r, best)) {
			best = r
		}
		if bestAny == nil || better(r, bestAny) {
			bestAny = r
		}
	}
	if best != nil {
		return best
	}
	return bestAny
}

// computeRatios fills Ratios: "x <baseline>" is orkstate's throughput over the
// baseline's best configuration (for claim latency: the baseline's p50 latency over
// orkstate's, so above 1 always means orkstate is better); "time ÷ same-write floor"
// is how much longer orkstate takes than plain SQL doing the same writes; "p50 ÷ 0
// blocked" and "p50 ÷ polling" compare latencies within orkstate.
func computeRatios(results []Result) {
	for i := range results {
		r := &results[i]
		if r.System != SystemOrkstate || r.Error != "" {
			continue
		}
		set := func(k string, v float64) {
			if math.IsInf(v, 0) || math.IsNaN(v) || v == 0 {
				return
			}
			if r.Ratios == nil {
				r.Ratios = map[string]float64{}
			}
			r.Ratios[k] = round2(v)
		}
		switch r.Scenario {
		case "claim_latency":
			if b := find(results, r.Scenario, r.Variant, SystemOrkV1, true); b != nil && r.P50Ms > 0 {
				set("x "+SystemOrkV1, b.P50Ms/r.P50Ms)
			}
			if z := find(results, r.Scenario, "0 blocked", SystemOrkstate, true); z != nil && z.Variant == "0 blocked" && z != r && z.P50Ms > 0 {
				set("p50 ÷ 0 blocked", r.P50Ms/z.P50Ms)
				if z.P99Ms > 0 {
					set("p99 ÷ 0 blocked", r.P99Ms/z.P99Ms)
				}
			}
		case "wakeup":
			if strings.HasPrefix(r.Variant, "polling") {
				continue
			}
			for j := range results {
				p := results[j]
				if p.Scenario == "wakeup" && strings.HasPrefix(p.Variant, "polling") && p.Error == "" && p.P50Ms > 0 {
					set("p50 ÷ polling", r.P50Ms/p.P50Ms)
				}
			}
		case "open_loop":
			// throughput is the arrival rate: latency is the measure, read side by side
		case "aged":
			if f := find(results, r.Scenario, "fresh "+strings.TrimPrefix(r.Variant, "aged "), SystemOrkstate, false); f != nil && f != r && strings.HasPrefix(r.Variant, "aged ") && f.Throughput > 0 {
				set("÷ fresh", r.Throughput/f.Throughput)
			}
		default:
			for _, b := range baselines {
				if base := find(results, r.Scenario, r.Variant, b, false); base != nil && base.Throughput > 0 && r.Throughput > 0 {
					if b == SystemFloor {
						set("time ÷ "+b, base.Throughput/r.Throughput)
						continue
					}
					set("x "+b, r.Throughput/base.Throughput)
				}
			}
		}
	}
}

// checkTargets evaluates the project's performance targets (issues 3, 4 and 6).
func checkTargets(results []Result) []Target {
	var ts []Target
	add := func(goal string, value float64, want string, met bool, detail string) {
		ts = append(ts, Target{Goal: goal, Value: round2(value), Want: want, Met: met, Detail: detail})
	}
	for _, r := range results {
		if r.System != SystemOrkstate || r.Error != "" {
			continue
		}
		switch r.Scenario {
		case "e2e":
			if strings.HasSuffix(r.Variant, twoCallsSuffix) || strings.HasSuffix(r.Variant, oneRunSuffix) {
				continue // the comparisons, not the product (e2e.go)
			}
			add("e2e DAG ("+r.Variant+") tasks/s", r.Throughput, "≥ 30000", r.Throughput >= 30000, "")
			if v, ok := r.Ratios["x river"]; ok {
				add("e2e DAG ("+r.Variant+") vs River no-op jobs/s", v, "≥ 2×", v >= 2, "")
			}
			if v, ok := r.Ratios["x ork-v1"]; ok {
				add("e2e DAG ("+r.Variant+") vs ork-v1", v, "≥ 30×", v >= 30, "")
			}
		case "batch_status":
			add("batch success with propagation ("+r.Variant+"), transitions/s", r.Throughput, "≥ 100000", r.Throughput >= 100000, "issue 3")
			if v, ok := r.Ratios["x ork-v1"]; ok {
				add("batch status updates ("+r.Variant+") vs ork-v1", v, "≥ 30×", v >= 30, "")
			}
			if v, ok := r.Ratios["time ÷ "+SystemFloor]; ok {
				add("batch status updates ("+r.Variant+"): orkstate's time ÷ the same-write floor's", v, "≤ 3×", v <= 3, "")
			}
		case "wakeup":
			if r.Variant == "NOTIFY" {
				add("wake-up p99, dependency's commit → dependent's claim, ms", r.P99Ms, "≤ 10", r.P99Ms <= 10,
					fmt.Sprintf("p50 %.2f ms; issue 4", r.P50Ms))
			}
		case "claims":
			if r.Variant == "4 claimers" {
				add("claims with 4 claimers, batches of 1000, tasks/s", r.Throughput, "≥ 100000", r.Throughput >= 100000, "")
			}
		}
	}
	ts = append(ts, snapshotTargets(results)...)
	retentionTargets(results, add)
	// claim latency at the largest blocked size against none
	var worst *Result
	for i := range results {
		r := &results[i]
		if r.Scenario == "claim_latency" && r.System == SystemOrkstate && r.Error == "" && r.Variant != "0 blocked" {
			if worst == nil || r.Items > 0 && blockedOf(r.Variant) > blockedOf(worst.Variant) {
				worst = r
			}
		}
	}
	if worst != nil {
		if v, ok := worst.Ratios["p50 ÷ 0 blocked"]; ok {
			add("claim latency p50 at "+worst.Variant+" ÷ at 0 blocked", v, "≤ 1.5×", v <= 1.5,
				fmt.Sprintf("p99 ratio %.2f", worst.Ratios["p99 ÷ 0 blocked"]))
		}
	}
	return append(ts, deferredTargets(results)...)
}

func blockedOf(variant string) float64 {
	var n float64
	var suffix string
	fmt.Sscanf(variant, "%g%s", &n, &suffix)
	switch {
	case strings.HasPrefix(suffix, "k"):
		n *= 1e3
	case strings.HasPrefix(suffix, "M"):
		n *= 1e6
	}
	return n
}

func round2(v float64) float64 { return math.Round(v*100) / 100 }

// humanInt formats a rate with thousands separators.
func humanInt(v float64) string {
	if v == 0 {
		return "-"
	}
	s := fmt.Sprintf("%.0f", v)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// humanCount writes 100000 as 100k and 1000000 as 1M.
func humanCount(n int) string {
	switch {
	case n >= 1_000_000 && n%1_000_000 == 0:
		return fmt.Sprintf("%dM", n/1_000_000)
	case n >= 1000 && n%1000 == 0:
		return fmt.Sprintf("%dk", n/1000)
	}
	return fmt.Sprint(n)
}

func fmtMs(ms float64) string {
	switch {
	case ms == 0:
		return "-"
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 1000:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.2fs", ms/1000)
}

func fmtRatios(m map[string]float64) string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s %.2f", k, m[k])
	}
	return strings.Join(parts, ", ")
}

// MachineLine describes where the numbers come from, in one line.
func (m Machine) Line() string {
	line := fmt.Sprintf("%d CPUs (%s), %s; autovacuum=%s, synchronous_commit=%s, shared_buffers=%s, wal_compression=%s, max_wal_size=%s; %s %s/%s",
		m.CPUs, m.CPUModel, m.Postgres, m.Autovacuum, m.SyncCommit, m.SharedBuffers, m.WALCompression, m.MaxWALSize, m.GoVersion, m.GOOS, m.GOARCH)
	if m.Commit != "" {
		line += "; commit " + m.Commit
	}
	return line
}

// fmtP99 prints a p99, or n/a when it would come from fewer than minP99Samples samples.
func fmtP99(r Result) string {
	if r.Samples > 0 && r.Samples < minP99Samples {
		return "n/a"
	}
	return fmtMs(r.P99Ms)
}

func fmtPer(v float64) string {
	switch {
	case v == 0:
		return "-"
	case v < 10:
		return fmt.Sprintf("%.1f", v)
	}
	return humanInt(v)
}

// PrintTable writes the results, the targets and what is missing as text.
func (rep *Report) PrintTable(w io.Writer) {
	fmt.Fprintf(w, "orkstate bench, %s mode, %.0fs — %s\n", rep.Mode, rep.Seconds, rep.Machine.Line())
	fmt.Fprintf(w, "Throughput: median of REPS repetitions (SPREAD: min–max); P50/P99 over every sample (p99 n/a under %d); per item: WAL bytes, Go allocations, on-disk bytes of the tables after the run, CPU µs the machine was busy (this process's part in brackets).\n\n", minP99Samples)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SCENARIO\tVARIANT\tSYSTEM\tCONFIG\tITEMS\tTHROUGHPUT\tREPS\tSPREAD\tP50\tP99\tWAL B\tALLOCS\tDISK B\tCPU µS\tDUP\tLOST\tRATIOS\tNOTE")
	for _, r := range rep.Results {
		tp := "-"
		if r.Throughput > 0 {
			tp = humanInt(r.Throughput) + " " + r.Unit + "/s"
		}
		note := r.Note
		if r.LatencyOf != "" {
			note = strings.TrimPrefix(note+"; latency: "+r.LatencyOf, "; ")
		}
		if r.Error != "" {
			note = "ERROR: " + r.Error
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", r.Scenario, r.Variant, r.System, r.Config, r.Items, tp,
			r.Reps, spread(r), fmtMs(r.P50Ms), fmtP99(r), fmtPer(r.WALBytesPerItem), fmtPer(r.AllocsPerItem), fmtPer(r.DiskBytesPerItem),
			fmtCPU(r), r.Duplicates, r.Losses, fmtRatios(r.Ratios), note)
	}
	tw.Flush()
	if len(rep.Targets) > 0 {
		fmt.Fprintln(w, "\nTargets:")
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		for _, t := range rep.Targets {
			mark := "MET   "
			if !t.Met {
				mark = "MISSED"
			}
			fmt.Fprintf(tw, "  %s\t%s\t%.2f\t(want %s)\t%s\n", mark, t.Goal, t.Value, t.Want, t.Detail)
		}
		tw.Flush()
	}
	if len(rep.Missing) > 0 {
		fmt.Fprintln(w, "\nNot measured:")
		for _, s := range rep.Missing {
			fmt.Fprintln(w, "  - "+s)
		}
	}
}

// Write puts <mode>.json, <mode>.txt (the table) and <mode>.svg (a chart) in dir
// and returns their paths.
func (rep *Report) Write(dir string) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, rep.Mode)
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return nil, err
	}
	var table strings.Builder
	rep.PrintTable(&table)
	files := map[string][]byte{
		base + ".json": append(b, '\n'),
		base + ".txt":  []byte(table.String()),
		base + ".svg":  []byte(rep.SVG()),
	}
	var paths []string
	for p, data := range files {
		if err := os.WriteFile(p, data, 0o644); err != nil {
			return nil, err
		}
		paths = append(paths, p)
	}
	slices.Sort(paths)
	return paths, nil
}

var systemColors = map[string]string{
	SystemOrkstate:  "#2b6cb0",
	SystemOrkV1:     "#c53030",
	SystemRiver:     "#6b46c1",
	SystemRaw:       "#718096",
	SystemFloor:     "#a0aec0",
	SystemTriggerer: "#9f7aea",
	SystemSQLite:    "#2f855a",
	SystemGraphile:  "#dd6b20",
}

// SVG draws throughput per result as horizontal bars on a log scale, grouped by
// scenario, each labelled with its value and, for orkstate, its ratios.
func (rep *Report) SVG() string {
	type row struct {
		label, system, value, ratios string
		v                            float64
		gap                          bool
	}
	var rows []row
	prev := ""
	for _, r := range rep.Results {
		if r.Error != "" || r.Throughput <= 0 {
			continue
		}
		label := r.Scenario
		if r.Variant != "" {
			label += " · " + r.Variant
		}
		if r.Config != "" {
			label += " · " + r.Config
		}
		rows = append(rows, row{label: label, system: r.System, v: r.Throughput,
			value: humanInt(r.Throughput) + " " + r.Unit + "/s", ratios: fmtRatios(r.Ratios), gap: prev != "" && prev != r.Scenario})
		prev = r.Scenario
	}
	lo, hi := 1e9, 1.0
	for _, r := range rows {
		lo, hi = math.Min(lo, r.v), math.Max(hi, r.v)
	}
	loDec, hiDec := math.Floor(math.Log10(math.Max(lo, 1))), math.Ceil(math.Log10(hi))
	if hiDec <= loDec {
		hiDec = loDec + 1
	}
	const (
		left, barW, rowH, top = 300, 520, 20, 70
	)
	height := top + 40
	for _, r := range rows {
		height += rowH
		if r.gap {
			height += 10
		}
	}
	x := func(v float64) float64 {
		return barW * (math.Log10(math.Max(v, 1)) - loDec) / (hiDec - loDec)
	}
	var b strings.Builder
	width := left + barW + 420
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	m := rep.Machine
	fmt.Fprintf(&b, `<text x="10" y="20" font-size="14" font-weight="bold">orkstate bench (%s): throughput, log scale</text>`+"\n", html.EscapeString(rep.Mode))
	fmt.Fprintf(&b, `<text x="10" y="38" fill="#555">%s</text>`+"\n", html.EscapeString(fmt.Sprintf("%d CPUs %s, %s, %s", m.CPUs, m.CPUModel, m.Postgres, rep.StartedAt.Format("2006-01-02"))))
	lx := 10
	for _, sys := range append([]string{SystemOrkstate}, baselines...) {
		fmt.Fprintf(&b, `<rect x="%d" y="48" width="10" height="10" fill="%s"/><text x="%d" y="57">%s</text>`+"\n", lx, systemColors[sys], lx+14, sys)
		lx += 14 + 7*len(sys) + 16
	}
	for d := loDec; d <= hiDec; d++ {
		gx := float64(left) + x(math.Pow(10, d))
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#ddd"/>`+"\n", gx, top-5, gx, height-30)
		fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#555">%s</text>`+"\n", gx, height-16, humanCount(int(math.Pow(10, d))))
	}
	y := top
	for _, r := range rows {
		if r.gap {
			y += 10
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-8, y+13, html.EscapeString(r.label))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", left, y+3, math.Max(1, x(r.v)), rowH-6, systemColors[r.system])
		text := r.system + ": " + r.value
		if r.ratios != "" {
			text += "  (" + r.ratios + ")"
		}
		fmt.Fprintf(&b, `<text x="%.1f" y="%d">%s</text>`+"\n", float64(left)+math.Max(1, x(r.v))+6, y+13, html.EscapeString(text))
		y += rowH
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// fmtCPU is the machine's CPU µs per item with this process's part in brackets.
func fmtCPU(r Result) string {
	if r.CPUMicrosPerItem <= 0 {
		return "-"
	}
	return fmt.Sprintf("%s (%s)", fmtPer(r.CPUMicrosPerItem), fmtPer(r.GoCPUMicrosPerItem))
}
