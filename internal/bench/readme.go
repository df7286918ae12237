package bench

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

// The README's benchmark table is generated from internal/bench/results/{quick,full}.json
// (TestREADMEMatchesResults fails when they disagree; `make bench` rewrites it), so
// its numbers cannot drift from what the code measured.

// README markers around the generated table.
const (
	ReadmeBegin = "<!-- bench-table:begin (generated from internal/bench/results by `go test ./internal/bench -run TestREADMEMatchesResults -update`) -->"
	ReadmeEnd   = "<!-- bench-table:end -->"
)

// LoadReport reads a report written by Report.Write; a missing file is (nil, nil).
func LoadReport(path string) (*Report, error) {
	b, err := os.ReadFile(path)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rep Report
	if err := json.Unmarshal(b, &rep); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &rep, nil
}

// readmeRow is one line of the README table: a label and its cell for a report.
type readmeRow struct {
	label string
	cell  func(rep *Report) string
}

func ratio(r *Result, k string) string {
	if r == nil || r.Ratios[k] == 0 {
		return ""
	}
	v := r.Ratios[k]
	switch {
	case v >= 100:
		return fmt.Sprintf("%.0f×", v)
	case v >= 10:
		return fmt.Sprintf("%.1f×", v)
	}
	return fmt.Sprintf("%.2f×", v)
}

func joinCell(parts ...string) string {
	var out []string
	for _, p := range parts {
		if p != "" {
			out = append(out, p)
		}
	}
	if len(out) == 0 {
		return "–"
	}
	return strings.Join(out, "; ")
}

func tput(r *Result) string {
	if r == nil || r.Throughput == 0 {
		return ""
	}
	s := humanInt(r.Throughput) + " " + r.Unit + "/s"
	if sp := spread(*r); sp != "" {
		s += " (" + sp + ")"
	}
	return s
}

func lat(r *Result) string {
	if r == nil || r.P50Ms == 0 {
		return ""
	}
	return fmt.Sprintf("p50 %s, p99 %s", fmtMs(r.P50Ms), fmtP99(*r))
}

func (rep *Report) get(scenario, variant, system string) *Result {
	for i := range rep.Results {
		r := &rep.Results[i]
		if r.Scenario == scenario && r.Variant == variant && r.System == system && r.Error == "" {
			return r
		}
	}
	return nil
}

func (rep *Report) best(scenario, variant, system string) *Result {
	r := find(rep.Results, scenario, variant, system, false)
	if r != nil && r.Variant != variant {
		return nil
	}
	return r
}

func prefixed(p, s string) string {
	if s == "" {
		return ""
	}
	return p + s
}

func perItem(r *Result) string {
	if r == nil {
		return ""
	}
	return fmt.Sprintf("%s: WAL %s B, disk %s B, %s allocs", r.System, fmtPer(r.WALBytesPerItem), fmtPer(r.DiskBytesPerItem), fmtPer(r.AllocsPerItem))
}

func readmeRows() []readmeRow {
	batch := func(reporters string) func(*Report) string {
		return func(rep *Report) string {
			v := fmt.Sprintf("chains, batch %d%s", rep.Sizes.BatchSize, reporters)
			o := rep.get("batch_status", v, SystemOrkstate)
			return joinCell(tput(o), prefixed("orkstate's time ÷ same-write floor's ", ratio(o, "time ÷ "+SystemFloor)),
				prefixed("vs ork-v1 ", ratio(o, "x "+SystemOrkV1)), prefixed("bare UPDATE of the status only: ", tput(rep.get("batch_status", v, SystemRaw))))
		}
	}
	e2e := func(shape string) func(*Report) string {
		return func(rep *Report) string {
			o := rep.get("e2e", shape, SystemOrkstate)
			return joinCell(tput(o), lat(o), prefixed("vs ork-v1 ", ratio(o, "x "+SystemOrkV1)), prefixed("vs River ", ratio(o, "x "+SystemRiver)),
				prefixed("vs graphile-worker ", ratio(o, "x "+SystemGraphile)))
		}
	}
	return []readmeRow{
		{"batch success with dependency propagation, batches of 1,000", batch("")},
		{"… two reporters at once", batch(", 2 reporters")},
		{"ork-v1 calibration: 1,000 single-row UPDATEs in a transaction (replay of the original: ≈6,500 rows/s)", func(rep *Report) string {
			return joinCell(tput(rep.get("calibration", "batch_update_task_status of 1,000", SystemOrkV1)))
		}},
		{"ork-v1 calibration: dispatch query, limit 100, 100k pending, ready / blocked (replay: ≈300 ms)", func(rep *Report) string {
			var parts []string
			for _, r := range rep.Results {
				if r.Scenario == "calibration" && strings.HasPrefix(r.Variant, "dispatch query") && r.Error == "" {
					parts = append(parts, r.Variant[strings.LastIndex(r.Variant, " ")+1:]+": "+lat(&r))
				}
			}
			return joinCell(parts...)
		}},
		{"claims, 4 claimers, batches of 1,000", func(rep *Report) string {
			o := rep.get("claims", "4 claimers", SystemOrkstate)
			return joinCell(tput(o), prefixed("vs ork-v1 ", ratio(o, "x "+SystemOrkV1)))
		}},
		{"claim latency at the most blocked tasks", func(rep *Report) string {
			var o *Result
			for i := range rep.Results {
				r := &rep.Results[i]
				if r.Scenario == "claim_latency" && r.System == SystemOrkstate && r.Error == "" && (o == nil || blockedOf(r.Variant) > blockedOf(o.Variant)) {
					o = r
				}
			}
			if o == nil {
				return "–"
			}
			return joinCell(o.Variant+": "+lat(o), prefixed("p50 ÷ 0 blocked ", ratio(o, "p50 ÷ 0 blocked")), prefixed("ork-v1 takes ", ratio(o, "x "+SystemOrkV1)))
		}},
		{"end-to-end DAG runs, chains (run creation on the clock)", e2e("chains")},
		{"end-to-end DAG runs, fan-out/fan-in", e2e("fan-out/fan-in")},
		{"per task, e2e chains", func(rep *Report) string {
			return joinCell(perItem(rep.get("e2e", "chains", SystemOrkstate)), perItem(rep.best("e2e", "chains", SystemOrkV1)),
				perItem(rep.get("e2e", "no-op jobs", SystemRiver)))
		}},
		{"failure paths: 10% fail once, 1 run in 20 cancelled", func(rep *Report) string {
			o := rep.get("failures", "10% fail once, 1 run in 20 cancelled", SystemOrkstate)
			return joinCell(tput(o), lat(o), prefixed("vs ork-v1 ", ratio(o, "x "+SystemOrkV1)))
		}},
		{"open loop, runs arriving at 50% / 80% of the maximum", func(rep *Report) string {
			var parts []string
			for _, r := range rep.Results {
				if r.Scenario == "open_loop" && r.Error == "" {
					parts = append(parts, r.System+" at "+r.Variant+": "+lat(&r))
				}
			}
			return joinCell(parts...)
		}},
		{"aged install (≥ 1M finished tasks, autovacuum on) ÷ fresh", func(rep *Report) string {
			var parts []string
			for _, r := range rep.Results {
				if r.Scenario == "aged" && r.Error == "" && r.Ratios["÷ fresh"] > 0 {
					parts = append(parts, strings.TrimPrefix(r.Variant, "aged ")+" "+ratio(&r, "÷ fresh"))
				}
			}
			return joinCell(parts...)
		}},
		{"churn under retention: tables ÷ a fresh install that ran the window", func(rep *Report) string {
			var parts []string
			for _, r := range rep.Results {
				if r.Scenario == "churn" && r.Error == "" && r.Ratios["size ÷ fresh"] > 0 {
					parts = append(parts, fmt.Sprintf("%s (%s tasks): %s", r.Variant, humanCount(r.Items), ratio(&r, "size ÷ fresh")))
				}
			}
			return joinCell(parts...)
		}},
		{"deferred polls through the SQL claim", func(rep *Report) string {
			o := rep.get("deferred", "completed on first poll", SystemOrkstate)
			return joinCell(tput(o), prefixed("vs orkstate's triggerer on River ", ratio(o, "x "+SystemTriggerer)))
		}},
		{"wake-up, dependency's commit → dependent's claim (NOTIFY)", func(rep *Report) string {
			return joinCell(lat(rep.get("wakeup", "NOTIFY", SystemOrkstate)))
		}},
	}
}

// ReadmeTable is the README's benchmark table for the quick and full reports (either may be nil).
func ReadmeTable(quick, full *Report) string {
	var b strings.Builder
	b.WriteString(ReadmeBegin + "\n")
	b.WriteString("| scenario | `make bench` (quick) | `make bench-full` |\n|---|---|---|\n")
	for _, row := range readmeRows() {
		cells := []string{"not run", "not run"}
		for i, rep := range []*Report{quick, full} {
			if rep != nil {
				cells[i] = row.cell(rep)
			}
		}
		fmt.Fprintf(&b, "| %s | %s | %s |\n", row.label, cells[0], cells[1])
	}
	b.WriteString("\n")
	for _, rep := range []*Report{quick, full} {
		if rep != nil {
			fmt.Fprintf(&b, "- %s, %s, %.0f s: %s\n", rep.Mode, rep.StartedAt.UTC().Format("2006-01-02"), rep.Seconds, rep.Machine.Line())
		}
	}
	b.WriteString(ReadmeEnd)
	return b.String()
}

// ReplaceReadmeTable returns readme with the text between the markers replaced by table.
func ReplaceReadmeTable(readme, table string) (string, error) {
	i := strings.Index(readme, ReadmeBegin)
	j := strings.Index(readme, ReadmeEnd)
	if i < 0 || j < i {
		return "", fmt.Errorf("README has no %q … %q section", ReadmeBegin, ReadmeEnd)
	}
	return readme[:i] + table + readme[j+len(ReadmeEnd):], nil
}
