package metrics_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/metrics"
	"github.com/orkstate/orkstate/pgstore"
)

// scrape serves reg over HTTP, as a Prometheus server would see it, and returns the body.
func scrape(t *testing.T, reg *prometheus.Registry) string {
	t.Helper()
	srv := httptest.NewServer(promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("scrape: %d %v", resp.StatusCode, err)
	}
	return string(body)
}

// value returns the sample of the line starting with series (name and labels).
func value(t *testing.T, body, series string) string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no %s in the scrape:\n%s", series, body)
	}
	return m[1]
}

// A scrape served over HTTP carries the install's figures from stats() and the
// latencies of the claims and reports made through the instrumented Store.
func TestScrape(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	s := testdb.Store(t)
	m, err := metrics.New(s, &metrics.Config{ConstLabels: prometheus.Labels{"schema": s.Schema()}})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	st := m.Instrument(s)

	w, err := st.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "wf"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.ReplaceWorkflowTasks(ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b"}, {Name: "c", DependsOn: []string{"a"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRun(ctx, w.ID, "test"); err != nil {
		t.Fatal(err)
	}
	if _, err := st.StartPendingRuns(ctx, 1); err != nil {
		t.Fatal(err)
	}
	got, err := st.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "w", Limit: 1})
	if err != nil || len(got) != 1 {
		t.Fatalf("claim = %v, %v", got, err)
	}
	if _, err := st.SetTaskStates(ctx, []orkstate.TaskUpdate{{TaskID: got[0].ID, Status: orkstate.TaskSuccess, Attempt: got[0].Attempt}}); err != nil {
		t.Fatal(err)
	}

	// The instrumented store keeps the capabilities of the store it wraps.
	if _, ok := st.(orkstate.Purger); !ok {
		t.Fatal("the instrumented store is not an orkstate.Purger")
	}
	rc, ok := st.(orkstate.ReportClaimer)
	if !ok {
		t.Fatal("the instrumented store is not an orkstate.ReportClaimer: a scheduler loop would fall back to two calls")
	}
	if _, got, err := rc.ReportAndClaim(ctx, nil, orkstate.ClaimParams{Claimer: "w", Limit: 1}); err != nil || len(got) != 1 {
		t.Fatalf("report and claim = %v, %v", got, err)
	}

	body := scrape(t, reg)
	label := `{schema="` + s.Schema() + `"}`
	for series, want := range map[string]string{
		"orkstate_stats_up" + label:                                                                  "1",
		"orkstate_ready_tasks" + label:                                                               "1", // b and c once a succeeded, less one claimed
		"orkstate_tasks_in_flight" + label:                                                           "1",
		"orkstate_tasks_unfinished" + label:                                                          "2",
		`orkstate_runs{schema="` + s.Schema() + `",status="running"}`:                                "1",
		`orkstate_claim_duration_seconds_count{outcome="ok",schema="` + s.Schema() + `"}`:            "1",
		`orkstate_report_duration_seconds_count{outcome="ok",schema="` + s.Schema() + `"}`:           "1",
		`orkstate_report_and_claim_duration_seconds_count{outcome="ok",schema="` + s.Schema() + `"}`: "1",
		"orkstate_tasks_claimed_total" + label:                                                       "2",
	} {
		if got := value(t, body, series); got != want {
			t.Errorf("%s = %s; want %s", series, got, want)
		}
	}
	if problems, err := testutil.GatherAndLint(reg); err != nil || len(problems) > 0 {
		t.Fatalf("lint: %v %+v", err, problems)
	}
}

// A scrape whose stats() call fails says so with stats_up 0 and exports no stale figures.
func TestScrapeOfAMissingInstall(t *testing.T) {
	t.Parallel()
	s, err := pgstore.New(testdb.Pool(t), &pgstore.Config{Schema: "no_such_install"})
	if err != nil {
		t.Fatal(err)
	}
	m, err := metrics.New(s, &metrics.Config{ScrapeTimeout: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	body := scrape(t, reg)
	if got := value(t, body, "orkstate_stats_up"); got != "0" {
		t.Fatalf("stats_up = %s; want 0", got)
	}
	if strings.Contains(body, "orkstate_ready_tasks") {
		t.Fatalf("figures exported without stats:\n%s", body)
	}
}

func TestConfigValidation(t *testing.T) {
	t.Parallel()
	_, err := metrics.New(nil, &metrics.Config{Window: -time.Second})
	var v *orkstate.ValidationError
	if !errors.As(err, &v) || v.Field != "Window" {
		t.Fatalf("New with a negative window = %v; want a ValidationError naming Window", err)
	}
}
