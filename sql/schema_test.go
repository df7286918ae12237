package orksql_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"

	"github.com/orkstate/orkstate/internal/testdb"
)

var update = flag.Bool("update", false, "rewrite schema.sql from a fresh install")

// TestSchemaDump: schema.sql is the normalised pg_dump --schema-only of a fresh
// install's schema — what the migrations make: tables, indexes, constraints,
// triggers, storage settings. The function package (<schema>_api) is left out: it
// is re-installed whole on deploy and reads best in sql/functions. A migration
// that was not followed by regenerating the dump fails here:
//
//	go test ./sql -run TestSchemaDump -update
func TestSchemaDump(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("pg_dump"); err != nil {
		t.Skip("pg_dump is not installed")
	}
	_, schema := testdb.Schema(t)
	out, err := exec.Command("pg_dump", "--schema-only", "--no-owner", "--no-privileges",
		"--schema", schema, "--dbname", testdb.URL()).Output()
	if err != nil {
		t.Fatalf("pg_dump: %v", err)
	}
	got := normalise(string(out), schema)
	if *update {
		if err := os.WriteFile("schema.sql", []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile("schema.sql")
	if err != nil {
		t.Fatal(err)
	}
	if string(want) != got {
		t.Fatalf("sql/schema.sql is not the schema a fresh install has; regenerate it:\n"+
			"  go test ./sql -run TestSchemaDump -update\nfirst difference:\n%s", firstDiff(string(want), got))
	}
}

var (
	dumpNoise  = regexp.MustCompile(`(?m)^(--.*|SET .*|SELECT pg_catalog\.set_config.*|\\(un)?restrict .*)\n`)
	blankLines = regexp.MustCompile(`\n{3,}`)
)

// normalise makes a dump comparable: the install's name becomes ork, and what
// differs between pg_dump runs and versions (comments, SET lines, \restrict keys)
// goes.
func normalise(dump, schema string) string {
	dump = dumpNoise.ReplaceAllString(dump, "")
	dump = strings.ReplaceAll(dump, schema, "ork")
	dump = blankLines.ReplaceAllString(dump, "\n\n")
	return "-- orkstate's schema at a glance: pg_dump --schema-only of a fresh install's schema (ork),\n" +
		"-- what sql/schema's migrations make; the functions are in sql/functions. Normalised by\n" +
		"-- sql/schema_test.go. Generated; do not edit:\n" +
		"--   go test ./sql -run TestSchemaDump -update\n\n" + strings.TrimSpace(dump) + "\n"
}

// firstDiff shows the first line where want and got differ.
func firstDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := range max(len(w), len(g)) {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			return fmt.Sprintf("line %d:\n  schema.sql: %s\n  fresh:      %s", i+1, wl, gl)
		}
	}
	return "(none)"
}
