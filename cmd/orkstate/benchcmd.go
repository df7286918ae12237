package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/orkstate/orkstate/internal/bench"
)

func cmdBench(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	full := fs.Bool("full", false, "run the large scenarios (1M blocked tasks, more runs)")
	tiny := fs.Bool("tiny", false, "trivial sizes: checks that the harness works, measures nothing")
	out := fs.String("out", "internal/bench/results", "directory for <mode>.json, .txt and .svg (empty: write nothing)")
	only := fs.String("only", "", "comma-separated scenarios to run: "+strings.Join(bench.Scenarios(), ", "))
	var sets []string
	fs.Func("set", "change one size of the preset, Field=value (a field of bench.Sizes; lists comma-separated), e.g.\n"+
		"-set Blocked=0,1000000 -set Reps=5; may be repeated", func(v string) error {
		sets = append(sets, v)
		return nil
	})
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := &bench.Config{Progress: stdout, Mode: "quick"}
	sizes := bench.QuickSizes()
	switch {
	case *full:
		sizes, cfg.Mode = bench.FullSizes(), "full"
	case *tiny:
		sizes, cfg.Mode = bench.TinySizes(), "tiny"
	}
	for _, v := range sets {
		if err := sizes.Set(v); err != nil {
			return err
		}
		cfg.Mode = "custom" // not to be mistaken for (or written over) a preset's results
	}
	cfg.Sizes = &sizes
	pool, err := connect(ctx, 32)
	if err != nil {
		return err
	}
	defer pool.Close()
	cfg.Pool = pool
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
