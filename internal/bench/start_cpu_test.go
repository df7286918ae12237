package bench

import (
	"context"
	"fmt"
	"os"
	"sort"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/pgstore"
)

// TestStartPendingRunsCPU measures, on one connection and its backend's CPU
// (/proc/<pid>/schedstat: run on the database's machine), what the e2e scheduler
// loop's StartPendingRuns costs: per task when it starts runs of the chains shape
// (100 tasks each, 20 runs per call, as the loop asks), and per call when no run is
// pending. Two installs alternate: as installed, and with the tasks.run_id foreign
// key that migration 010 replaced by a statement trigger. Run by hand:
//
//	ORK_START_CPU=10 go test ./internal/bench -run TestStartPendingRunsCPU -v
//
// (rounds of 100 runs per install; ORK_START_CPU_CHAINS chains of 10 tasks per
// run, default 10 as the e2e chains shape: the cost per run apart from its tasks
// is the difference between two sizes).
func TestStartPendingRunsCPU(t *testing.T) {
	rounds := envInt("ORK_START_CPU", 0)
	if rounds <= 0 {
		t.Skip("ORK_START_CPU=<rounds> runs it")
	}
	ctx := context.Background()
	url := testdb.URL()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	r := &runner{pool: pool, sizes: QuickSizes(), progress: os.Stderr, start: time.Now()}
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	cpu := schedCPU(t, int(conn.PgConn().PID()))

	type install struct {
		name string
		s    *pgstore.Store
		wf   int64
	}
	var ins []install
	for _, name := range []string{"as installed (no FK)", "tasks.run_id FK"} {
		s, drop, err := r.install(ctx)
		if err != nil {
			t.Fatal(err)
		}
		defer drop()
		if name != "as installed (no FK)" {
			// the schema before migration 010
			q := fmt.Sprintf(`drop trigger tasks_forget_deleted_runs on %[1]s.runs;
				alter table %[1]s.tasks add constraint tasks_run_id_fkey foreign key (run_id)
					references %[1]s.runs(id) on delete cascade`, s.Schema())
			if _, err := pool.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		wf, err := s.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "start_cpu", JobName: "j", ExecutorType: "noop"})
		if err != nil {
			t.Fatal(err)
		}
		snap, err := s.CreateSnapshot(ctx, wf.ID, chainsOf(envInt("ORK_START_CPU_CHAINS", 10)))
		if err != nil {
			t.Fatal(err)
		}
		if err := s.SetCurrentSnapshot(ctx, wf.ID, snap.ID); err != nil {
			t.Fatal(err)
		}
		ins = append(ins, install{name, s, wf.ID})
	}
	perTask := make([][]float64, len(ins))
	perEmpty := make([][]float64, len(ins))
	wallEmpty := make([][]float64, len(ins))
	for round := 0; round < rounds; round++ {
		for k := range ins {
			i := (k + round) % len(ins)
			in := ins[i]
			batch := make([]orkstate.NewRun, 100)
			for j := range batch {
				batch[j] = orkstate.NewRun{WorkflowID: in.wf, TriggeredBy: "bench"}
			}
			if _, err := in.s.CreateRuns(ctx, batch); err != nil {
				t.Fatal(err)
			}
			q := fmt.Sprintf(`select count(*), coalesce(sum(tasks_created), 0) from %s_api.start_pending_runs(20)`, in.s.Schema())
			c0, tasks := cpu(), 0
			for {
				var n, created int
				if err := conn.QueryRow(ctx, q).Scan(&n, &created); err != nil {
					t.Fatal(err)
				}
				if n == 0 {
					break
				}
				tasks += created
			}
			perTask[i] = append(perTask[i], float64(cpu()-c0)/1e3/float64(tasks))
			const empties = 50
			c0, w0 := cpu(), time.Now()
			for range empties {
				var n, created int
				if err := conn.QueryRow(ctx, q).Scan(&n, &created); err != nil {
					t.Fatal(err)
				}
			}
			perEmpty[i] = append(perEmpty[i], float64(cpu()-c0)/1e3/empties)
			wallEmpty[i] = append(wallEmpty[i], float64(time.Since(w0).Microseconds())/empties)
		}
	}
	for i, in := range ins {
		med := func(v []float64) float64 {
			s := append([]float64(nil), v...)
			sort.Float64s(s)
			return s[(len(s)-1)/2]
		}
		t.Logf("%-20s start: server CPU %.1f µs per task (rounds %.1f); a call finding nothing pending: %.0f µs CPU, %.0f µs wall",
			in.name, med(perTask[i]), perTask[i], med(perEmpty[i]), med(wallEmpty[i]))
	}
}

// chainsOf is chainsShape's DAG with n chains of 10 tasks.
func chainsOf(n int) []orkstate.TaskSpec {
	var specs []orkstate.TaskSpec
	for c := 0; c < n; c++ {
		for l := 0; l < 10; l++ {
			s := orkstate.TaskSpec{Name: fmt.Sprintf("c%d_%d", c, l), ExecutorType: "noop", DependsOn: []string{}}
			if l > 0 {
				s.DependsOn = []string{fmt.Sprintf("c%d_%d", c, l-1)}
			}
			specs = append(specs, s)
		}
	}
	return specs
}
