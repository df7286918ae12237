package testdb

import (
	"context"
	"fmt"
	"testing"
	"time"
)

// An install nobody took for longer than staleAfter is dropped by the sweep; one
// taken recently stays.
func TestSweepDropsStaleInstalls(t *testing.T) {
	ctx := context.Background()
	p := Pool(t)
	tag := fmt.Sprintf("%x", time.Now().UnixNano())
	old, recent := reusePrefix+"zzstale"+tag+"_0", reusePrefix+"zzfresh"+tag+"_0"
	for schema, used := range map[string]time.Time{old: time.Now().Add(-2 * staleAfter), recent: time.Now()} {
		if _, err := p.Exec(ctx, fmt.Sprintf(`create schema %s; comment on schema %[1]s is 'ready %d'`, schema, used.Unix())); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _, _ = p.Exec(context.Background(), "drop schema if exists "+recent+", "+old) })

	sweepStale(ctx, t)

	var left []string
	if err := p.QueryRow(ctx, `select coalesce(array_agg(nspname order by nspname), '{}') from pg_namespace where nspname in ($1, $2)`,
		old, recent).Scan(&left); err != nil {
		t.Fatal(err)
	}
	if len(left) != 1 || left[0] != recent {
		t.Fatalf("schemas left after the sweep = %v, want only %s", left, recent)
	}
}
