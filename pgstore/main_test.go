package pgstore_test

import (
	"flag"
	"os"
	"testing"
)

// defaultParallel replaces -parallel's default (GOMAXPROCS, 2 on the development
// machine) when the flag is not given. Most of this package's tests wait on the
// database or on real time (leases, retry backoff, sweeps) rather than use a CPU,
// and storetest runs three times here (pool, simple protocol, WithTx): with two
// tests at a time the package took 3.5 min on a loaded 2-core machine, with six
// 1.9 min. Each test holds a reused install (one idle connection keeps its lock)
// and a connection or two: four at a time keep this binary near 30 connections of
// the server's 100, which other engineers' tests share.
const defaultParallel = "4"

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		if err := flag.Set("test.parallel", defaultParallel); err != nil {
			panic(err)
		}
	}
	os.Exit(m.Run())
}
