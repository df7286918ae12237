package pgstore_test

import (
	"io/fs"
	"os"
	"regexp"
	"slices"
	"testing"

	orksql "github.com/orkstate/orkstate/sql"
)

// The SQLSTATEs of our own (OKnnn) that errors.go translates are exactly those the
// functions raise: a code translated but never raised is dead code that misleads
// (OK412 was one), and a code raised but not translated leaks a *pgconn.PgError.
func TestSQLSTATEsMatchTheFunctions(t *testing.T) {
	code := regexp.MustCompile(`OK[0-9A-Z]{3}`)
	src, err := os.ReadFile("errors.go")
	if err != nil {
		t.Fatal(err)
	}
	translated := slices.Compact(slices.Sorted(slices.Values(code.FindAllString(string(src), -1))))

	raise := regexp.MustCompile(`errcode\s*=\s*'(OK[0-9A-Z]{3})'`)
	var raised []string
	err = fs.WalkDir(orksql.Functions(), ".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := fs.ReadFile(orksql.Functions(), path)
		for _, m := range raise.FindAllStringSubmatch(string(b), -1) {
			raised = append(raised, m[1])
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	raised = slices.Compact(slices.Sorted(slices.Values(raised)))
	if !slices.Equal(translated, raised) {
		t.Fatalf("errors.go translates %v; sql/functions raises %v", translated, raised)
	}
}
