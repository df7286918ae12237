// Command orkstate installs, inspects, demonstrates and benchmarks an orkstate store.
//
//	orkstate migrate [--schema ork] [--down-to N] [--river]
//	orkstate status  [--schema ork]
//	orkstate demo    [--schema ork_demo_<pid>] [--keep] [--sqlite FILE]
//	orkstate bench   [--full] [--out bench/results] [--only a,b]
//
// The database is DATABASE_URL, else postgres://postgres@localhost:5432/postgres?sslmode=disable.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/orkstate/orkstate/bench"
	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/triggerer"
)

// defaultURL is used when DATABASE_URL is not set.
const defaultURL = "postgres://postgres@localhost:5432/postgres?sslmode=disable"

func databaseURL() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return defaultURL
}

type command struct {
	name, usage, help string
	run               func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"migrate", "migrate [--schema ork] [--down-to N] [--river]", "install or upgrade the schema and functions (or roll back to version N)", cmdMigrate},
		{"status", "status [--schema ork]", "show the install's version and its runs and tasks by status", cmdStatus},
		{"demo", "demo [--schema NAME] [--keep] [--sqlite FILE]", "run a DAG workflow through two scheduler loops and show what happens", cmdDemo},
		{"bench", "bench [--full] [--out bench/results] [--only a,b]", "run the benchmarks against their baselines and write JSON + SVG", cmdBench},
	}
}

func usage(w io.Writer) {
	fmt.Fprintf(w, "usage: orkstate <command> [flags]\n\ncommands:\n")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-52s %s\n", c.usage, c.help)
	}
	fmt.Fprintf(w, "\nThe database is DATABASE_URL, else %s.\n", defaultURL)
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

// exitError carries an exit code with nothing more to print.
type exitError int

func (e exitError) Error() string { return fmt.Sprintf("exit %d", int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return 2
		}
		return 0
	}
	for _, c := range commands() {
		if c.name != args[0] {
			continue
		}
		err := c.run(ctx, args[1:], stdout, stderr)
		var code exitError
		switch {
		case err == nil:
			return 0
		case errors.Is(err, flag.ErrHelp):
			return 0
		case errors.As(err, &code):
			return int(code)
		}
		fmt.Fprintf(stderr, "orkstate %s: %v\n", c.name, err)
		return 1
	}
	fmt.Fprintf(stderr, "orkstate: unknown command %q\n\n", args[0])
	usage(stderr)
	return 2
}

// connect opens a pool and checks that the server answers.
func connect(ctx context.Context, maxConns int32) (*pgxpool.Pool, error) {
	cfg, err := pgxpool.ParseConfig(databaseURL())
	if err != nil {
		return nil, fmt.Errorf("DATABASE_URL: %w", err)
	}
	if maxConns > 0 {
		cfg.MaxConns = maxConns
	}
	cfg.ConnConfig.ConnectTimeout = 5 * time.Second
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := pool.Ping(pctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("PostgreSQL is not reachable at %s: %w\n%s", redact(databaseURL()), err, startHint)
	}
	return pool, nil
}

const startHint = `Start one (Debian: pg_ctlcluster 15 main start, or apt-get install postgresql;
Docker: docker run -d -p 5432:5432 -e POSTGRES_HOST_AUTH_METHOD=trust postgres:15)
or point DATABASE_URL at a server where you may create schemas.`

// redact hides a password in a connection URL.
func redact(u string) string {
	if at := strings.Index(u, "@"); at > 0 {
		if scheme := strings.Index(u, "://"); scheme >= 0 && scheme < at {
			if colon := strings.Index(u[scheme+3:at], ":"); colon >= 0 {
				return u[:scheme+3+colon+1] + "***" + u[at:]
			}
		}
	}
	return u
}

func cmdMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	schema := fs.String("schema", pgstore.DefaultSchema, "install schema")
	downTo := fs.Int("down-to", -1, "roll back to this schema version (0 removes the install)")
	withRiver := fs.Bool("river", false, "also install River's tables (for the triggerer) in the schema")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := pgstore.ValidateSchemaName(*schema); err != nil {
		return err
	}
	pool, err := connect(ctx, 4)
	if err != nil {
		return err
	}
	defer pool.Close()
	if *downTo >= 0 {
		if err := pgstore.MigrateTo(ctx, pool, *schema, int32(*downTo)); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s: at version %d\n", *schema, *downTo)
		return nil
	}
	if err := pgstore.Migrate(ctx, pool, *schema); err != nil {
		return err
	}
	if *withRiver {
		if err := triggerer.MigrateRiver(ctx, pool, *schema); err != nil {
			return err
		}
	}
	v, _ := schemaVersion(ctx, pool, *schema)
	fmt.Fprintf(stdout, "%s: at version %d, functions installed in %s_api\n", *schema, v, *schema)
	return nil
}

func schemaVersion(ctx context.Context, pool *pgxpool.Pool, schema string) (int, error) {
	var v int
	err := pool.QueryRow(ctx, "select version from "+pgstore.VersionTable(schema)).Scan(&v)
	return v, err
}

func cmdStatus(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	schema := fs.String("schema", pgstore.DefaultSchema, "install schema")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := pgstore.ValidateSchemaName(*schema); err != nil {
		return err
	}
	pool, err := connect(ctx, 2)
	if err != nil {
		return err
	}
	defer pool.Close()
	v, err := schemaVersion(ctx, pool, *schema)
	if err != nil || v == 0 {
		return fmt.Errorf("%s is not installed (run: orkstate migrate --schema %s)", *schema, *schema)
	}
	fmt.Fprintf(stdout, "install %s: schema version %d\n", *schema, v)
	// The schema name is a validated identifier, never a value.
	for _, table := range []string{"runs", "tasks", "deferred_jobs"} {
		rows, err := pool.Query(ctx, "select status, count(*) from "+*schema+"."+table+" group by status order by status")
		if err != nil {
			return err
		}
		var parts []string
		total := 0
		for rows.Next() {
			var s string
			var n int
			if err := rows.Scan(&s, &n); err != nil {
				rows.Close()
				return err
			}
			parts = append(parts, fmt.Sprintf("%s %d", s, n))
			total += n
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return err
		}
		line := strings.Join(parts, ", ")
		if line == "" {
			line = "none"
		}
		fmt.Fprintf(stdout, "  %-14s %8d  (%s)\n", table, total, line)
	}
	var workflows int
	if err := pool.QueryRow(ctx, "select count(*) from "+*schema+".workflows").Scan(&workflows); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "  %-14s %8d\n", "workflows", workflows)
	return nil
}

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	full := fs.Bool("full", false, "run the large scenarios (1M blocked tasks, more runs)")
	tiny := fs.Bool("tiny", false, "trivial sizes: checks that the harness works, measures nothing")
	out := fs.String("out", "bench/results", "directory for <mode>.json, .txt and .svg (empty: write nothing)")
	only := fs.String("only", "", "comma-separated scenarios to run: "+strings.Join(bench.Scenarios(), ", "))
	if err := fs.Parse(args); err != nil {
		return err
	}
	pool, err := connect(ctx, 32)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg := &bench.Config{Pool: pool, Progress: stdout, Mode: "quick"}
	sizes := bench.QuickSizes()
	switch {
	case *full:
		sizes, cfg.Mode = bench.FullSizes(), "full"
	case *tiny:
		sizes, cfg.Mode = bench.TinySizes(), "tiny"
	}
	cfg.Sizes = &sizes
	if *only != "" {
		cfg.Only = strings.Split(*only, ",")
	}
	rep, err := bench.Run(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout)
	rep.PrintTable(stdout)
	if *out != "" {
		paths, err := rep.Write(*out)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "\nwrote %s\n", strings.Join(paths, ", "))
	}
	return nil
}
