package main

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/orkstate/orkstate/pgstore"
	"github.com/orkstate/orkstate/sqlitecompat"
	"github.com/orkstate/orkstate/triggerer"
)

func (a *app) migrateCommand() *cobra.Command {
	var downTo int
	var river bool
	c := &cobra.Command{
		Use:   "migrate",
		Short: "Install or upgrade the schema and functions (or roll back to version N)",
		Long: `Install or upgrade the install schema (--schema, else ORK_SCHEMA, else ork) and
its functions in <schema>_api, under tern's advisory lock. On a SQLite file
(--db ork.db) it creates or upgrades the file.`,
		Example: "  orkstate migrate\n  ORK_SCHEMA=ork_staging orkstate migrate --river\n  orkstate migrate --down-to 0   # removes the install",
		Args:    args(),
		RunE: cmdErr(func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			dsn := a.dbFlag()
			if !isPostgres(dsn) {
				return a.migrateSQLite(ctx, dsn, downTo)
			}
			if err := pgstore.ValidateSchemaName(a.schema); err != nil {
				return err
			}
			pool, err := connectURL(ctx, dsn, 4)
			if err != nil {
				return err
			}
			defer pool.Close()
			if downTo >= 0 {
				if err := pgstore.MigrateTo(ctx, pool, a.schema, int32(downTo)); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "%s: at version %d\n", a.schema, downTo)
				return nil
			}
			if err := pgstore.Migrate(ctx, pool, a.schema); err != nil {
				return err
			}
			if river {
				if err := triggerer.MigrateRiver(ctx, pool, a.schema); err != nil {
					return err
				}
			}
			v, _ := schemaVersion(ctx, pool, a.schema)
			fmt.Fprintf(a.stdout, "%s: at version %d, functions installed in %s_api\n", a.schema, v, a.schema)
			return nil
		}),
	}
	c.Flags().IntVar(&downTo, "down-to", -1, "roll back to this schema version (0 removes the install)")
	c.Flags().BoolVar(&river, "river", false, "also install River's tables (for the triggerer) in the schema")
	return c
}

func (a *app) migrateSQLite(ctx context.Context, path string, downTo int) error {
	st, err := sqlitecompat.Open(ctx, path, &sqlitecompat.Config{NoMigrate: downTo >= 0})
	if err != nil {
		return err
	}
	defer st.Close()
	if downTo >= 0 {
		if err := st.MigrateTo(ctx, downTo); err != nil {
			return err
		}
	}
	v, err := st.SchemaVersion(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(a.stdout, "%s: at version %d\n", path, v)
	return nil
}

type statusCount struct {
	status string
	n      int
}

func countByStatus(ctx context.Context, be *backend, query string) ([]statusCount, error) {
	var out []statusCount
	if be.pg != nil {
		rows, err := be.pool.Query(ctx, query)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var c statusCount
			if err := rows.Scan(&c.status, &c.n); err != nil {
				return nil, err
			}
			out = append(out, c)
		}
		return out, rows.Err()
	}
	rows, err := be.sqlite.DB().QueryContext(ctx, query)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	for rows.Next() {
		var c statusCount
		if err := rows.Scan(&c.status, &c.n); err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, rows.Err()
}

// demoCommand and benchCommand hand their arguments to cmdDemo and cmdBench,
// which parse their own flags (the demo's --schema is a fresh schema of its own).
func (a *app) demoCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "demo [--schema NAME] [--keep] [--sqlite FILE]",
		Short:              "Run a DAG workflow through two scheduler loops and show what happens",
		DisableFlagParsing: true,
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			return cmdDemo(cmd.Context(), args, a.stdout, a.stderr)
		}),
	}
}

func (a *app) benchCommand() *cobra.Command {
	return &cobra.Command{
		Use:                "bench [--full] [--tiny] [--out internal/bench/results] [--only a,b]",
		Short:              "Run the benchmarks against their baselines and write JSON + SVG",
		DisableFlagParsing: true,
		RunE: cmdErr(func(cmd *cobra.Command, args []string) error {
			return cmdBench(cmd.Context(), args, a.stdout, a.stderr)
		}),
	}
}
