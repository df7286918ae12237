package bench

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/notify"
	"github.com/orkstate/orkstate/pgstore"
)

// TestE2EInstallWAL drives the e2e DAG shapes through two installs of this package
// and counts the WAL of each install's own relations (and of the commits of the
// transactions that wrote them) with pg_waldump, so other sessions' WAL on a shared
// server is not counted, as the bench's server-wide column does. In the second
// install ("rows"), triggers keep a join's count on its task row instead of in
// task_deps_unmet, which this package still counts down there: what a join cost
// before migration 008 (issue 14). The drives alternate between the installs. Run by
// hand, as root on the database's machine:
//
//	ORK_E2E_WAL=100 go test ./internal/bench -run TestE2EInstallWAL -v
//
// (runs per drive; ORK_E2E_WAL_REPS repetitions, default 3; ORK_PGWAL the pg_wal
// directory, default /var/lib/postgresql/15/main/pg_wal).
func TestE2EInstallWAL(t *testing.T) {
	runs, _ := strconv.Atoi(os.Getenv("ORK_E2E_WAL"))
	if runs <= 0 {
		t.Skip("ORK_E2E_WAL=<runs per drive> runs it")
	}
	reps, _ := strconv.Atoi(os.Getenv("ORK_E2E_WAL_REPS"))
	if reps <= 0 {
		reps = 3
	}
	walDir := os.Getenv("ORK_PGWAL")
	if walDir == "" {
		walDir = "/var/lib/postgresql/15/main/pg_wal"
	}
	waldump, err := exec.LookPath("pg_waldump")
	if err != nil {
		waldump = "/usr/lib/postgresql/15/bin/pg_waldump"
	}
	ctx := context.Background()
	type install struct {
		name string
		s    *pgstore.Store
		l    *notify.Listener
	}
	var installs []install
	for _, name := range []string{"apart", "rows"} {
		pool, schema := testdb.Schema(t)
		s, err := pgstore.New(pool, &pgstore.Config{Schema: schema})
		if err != nil {
			t.Fatal(err)
		}
		if name == "rows" {
			q := strings.ReplaceAll(`
				create function {ork}.bench_count_on_row() returns trigger language plpgsql as $$
				begin
					if cardinality(new.depends_on) >= 2 and new.unmet_deps = 0 and new.status in ('pending', 'paused') then
						new.unmet_deps := cardinality(new.depends_on);  -- a new run: nothing has succeeded
					end if;
					return new;
				end $$;
				create trigger bench_count_on_row before insert on {ork}.tasks
					for each row execute function {ork}.bench_count_on_row();
				create function {ork}.bench_no_count_apart() returns trigger language plpgsql as $$
				begin return null; end $$;
				create trigger bench_no_count_apart before insert on {ork}.task_deps_unmet
					for each row execute function {ork}.bench_no_count_apart();`, "{ork}", schema)
			if _, err := pool.Exec(ctx, q); err != nil {
				t.Fatal(err)
			}
		}
		l, err := notify.NewListener(pool, &notify.ListenerConfig{Schema: schema, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		if err := l.Start(ctx); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(l.Stop)
		installs = append(installs, install{name, s, l})
	}
	nodes := func(in install) map[string]string {
		rows, err := in.s.Pool().Query(ctx, `
			select pg_relation_filenode(c.oid)::text, c.relname::text from pg_class c
			where c.relnamespace = $1::regnamespace and pg_relation_filenode(c.oid) is not null
			union all
			select pg_relation_filenode(x.oid)::text, c.relname || ' (toast)' from pg_class c
			join pg_class x on x.oid = c.reltoastrelid or x.oid in (select indexrelid from pg_index where indrelid = c.reltoastrelid)
			where c.relnamespace = $1::regnamespace`, in.s.Schema())
		if err != nil {
			t.Fatal(err)
		}
		defer rows.Close()
		out := map[string]string{}
		for rows.Next() {
			var n, rel string
			if err := rows.Scan(&n, &rel); err != nil {
				t.Fatal(err)
			}
			out[n] = rel
		}
		return out
	}
	relRe := regexp.MustCompile(`rel \d+/\d+/(\d+)`)
	lenRe := regexp.MustCompile(`len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+)`)
	// wal sums the records between from and to that touch the install's relations, and
	// the commit records of their transactions.
	// byRel (ORK_E2E_WAL_BY=1) sums them by the first relation a record names and its kind.
	wal := func(in install, from, to string, byRel map[string]float64) (bytes float64, fpi int) {
		own := nodes(in)
		cmd := exec.Command(waldump, "-p", walDir, "-s", from, "-e", to)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		xids := map[string]bool{}
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<24)
		for sc.Scan() {
			line := sc.Text()
			m := lenRe.FindStringSubmatch(line)
			if m == nil {
				continue
			}
			tot, _ := strconv.ParseFloat(m[1], 64)
			mine := false
			for _, r := range relRe.FindAllStringSubmatch(line, -1) {
				if rel, ok := own[r[1]]; ok {
					mine = true
					if byRel != nil {
						kind := line
						if i := strings.Index(kind, "desc: "); i >= 0 {
							kind = kind[i+6:]
						}
						kind = strings.Fields(kind + " ?")[0]
						byRel[rel+" "+kind] += tot
					}
					break
				}
			}
			switch {
			case mine:
				bytes += tot
				if m[2] != "0" {
					xids[m[2]] = true
				}
				if strings.Contains(line, "FPW") {
					fpi++
				}
			case strings.HasPrefix(line, "rmgr: Transaction") && xids[m[2]]:
				bytes += tot
			}
		}
		_ = cmd.Wait() // pg_waldump ends with an error at the end of the WAL written so far
		return bytes, fpi
	}
	lsn := func(in install) string {
		var l string
		if err := in.s.Pool().QueryRow(ctx, `select pg_current_wal_lsn()::text`).Scan(&l); err != nil {
			t.Fatal(err)
		}
		return l
	}
	for _, shape := range []dagShape{fanShape(), chainsShape()} {
		for rep := 0; rep < reps; rep++ {
			for k := range installs {
				in := installs[(k+rep)%len(installs)] // which goes first alternates
				from := lsn(in)
				o, err := driveE2E(ctx, in.s, pgWaiters(in.l, 100*time.Millisecond), shape, runs, 4, 1000, failurePlan{})
				if err != nil {
					t.Fatal(err)
				}
				time.Sleep(200 * time.Millisecond) // the last commits' records are flushed
				to := lsn(in)
				var counted int
				if err := in.s.Pool().QueryRow(ctx, strings.ReplaceAll(`select count(*) from {ork}.task_deps_unmet`, "{ork}", in.s.Schema())).Scan(&counted); err != nil {
					t.Fatal(err)
				}
				if in.name == "rows" && counted != 0 || in.name == "apart" && shape.name != "chains" && counted == 0 {
					t.Fatalf("%s: %d counts apart after the %s drive", in.name, counted, shape.name)
				}
				var byRel map[string]float64
				if os.Getenv("ORK_E2E_WAL_BY") != "" {
					byRel = map[string]float64{}
				}
				b, fpi := wal(in, from, to, byRel)
				t.Logf("%-15s %-5s rep %d: %6.0f B of WAL per task (%d full-page images), %6.0f tasks/s",
					shape.name, in.name, rep+1, b/float64(o.tasks), fpi, float64(o.tasks)/o.secs)
				type kv struct {
					k string
					v float64
				}
				var top []kv
				for k, v := range byRel {
					top = append(top, kv{k, v})
				}
				sort.Slice(top, func(i, j int) bool { return top[i].v > top[j].v })
				for _, e := range top[:min(len(top), 12)] {
					t.Logf("    %-40s %6.0f B per task", e.k, e.v/float64(o.tasks))
				}
			}
		}
	}
}
