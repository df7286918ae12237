package pgstore_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
)

// docFiles are the documents whose code examples must work: the README and every
// document under docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	docs, err := filepath.Glob("../docs/*.md")
	if err != nil || len(docs) == 0 {
		t.Fatalf("no documents under ../docs: %v", err)
	}
	return append([]string{"../README.md"}, docs...)
}

// codeBlocks returns the fenced blocks of lang in a markdown file.
func codeBlocks(t *testing.T, path, lang string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	noErr(t, err)
	var blocks []string
	var cur []string
	in := false
	for line := range strings.SplitSeq(string(b), "\n") {
		switch {
		case !in && strings.TrimSpace(line) == "```"+lang:
			in, cur = true, nil
		case in && strings.TrimSpace(line) == "```":
			in = false
			blocks = append(blocks, strings.Join(cur, "\n"))
		case in:
			cur = append(cur, line)
		}
	}
	return blocks
}

var (
	docSchemaWord = regexp.MustCompile(`\bork(_api)?\b`)
	docRoleWord   = regexp.MustCompile(`\bapp\b`)
)

// forInstall rewrites a documented SQL example (install ork, role app) for a
// test's install and role.
func forInstall(sql, schema, role string) string {
	sql = docSchemaWord.ReplaceAllStringFunc(sql, func(w string) string { return schema + strings.TrimPrefix(w, "ork") })
	return docRoleWord.ReplaceAllString(sql, role)
}

// readmeGrants are the README's least-privilege grants for schema and role, one
// statement each.
func readmeGrants(t *testing.T, schema, role string) []string {
	t.Helper()
	for _, block := range codeBlocks(t, "../README.md", "sql") {
		if !strings.Contains(block, "grant usage on schema ork, ork_api to app") {
			continue
		}
		var out []string
		for line := range strings.SplitSeq(forInstall(block, schema, role), "\n") {
			if i := strings.Index(line, "--"); i >= 0 {
				line = line[:i]
			}
			if line = strings.TrimSpace(line); line != "" {
				out = append(out, line)
			}
		}
		return out
	}
	t.Fatalf("README.md has no sql block with the least-privilege grants")
	return nil
}

// Every ```sql example of the README and docs runs against a fresh install (with a
// role "app" and a started run whose tasks can be claimed), and every ```go example
// is an excerpt of an Example function, which go test compiles and runs: its lines
// appear in the same order in one example_test.go.
func TestDocExamples(t *testing.T) {
	t.Parallel()
	examples := exampleSources(t)
	for _, doc := range docFiles(t) {
		for i, block := range codeBlocks(t, doc, "sql") {
			t.Run(fmt.Sprintf("%s sql %d", filepath.Base(doc), i), func(t *testing.T) {
				t.Parallel()
				b := setupFresh(t)
				role := b.s.Schema() + "_app"
				b.exec(t, "create role "+role)
				t.Cleanup(func() { dropRole(b, role) })
				w := b.workflow(t, "docs")
				_, err := b.s.ReplaceWorkflowTasks(b.ctx, w.ID, []orkstate.TaskSpec{{Name: "a"}, {Name: "b"}})
				noErr(t, err)
				b.run(t, w.ID)
				_, err = b.s.StartPendingRuns(b.ctx, 1)
				noErr(t, err)
				sql := forInstall(block, b.s.Schema(), role)
				if _, err := b.s.Pool().Exec(b.ctx, sql); err != nil {
					t.Fatalf("%s: the example\n%s\nfails: %v", doc, block, err)
				}
			})
		}
		for i, block := range codeBlocks(t, doc, "go") {
			if !excerptOfAny(block, examples) {
				t.Errorf("%s go block %d is not an excerpt of any example_test.go (lines in order):\n%s", doc, i, block)
			}
		}
	}
}

// exampleSources are the trimmed lines of every example_test.go of the module.
func exampleSources(t *testing.T) [][]string {
	t.Helper()
	paths, err := filepath.Glob("../*/example_test.go")
	noErr(t, err)
	root, _ := filepath.Glob("../example_test.go")
	var out [][]string
	for _, p := range append(paths, root...) {
		b, err := os.ReadFile(p)
		noErr(t, err)
		out = append(out, trimmedLines(string(b)))
	}
	if len(out) == 0 {
		t.Fatalf("no example_test.go found")
	}
	return out
}

func trimmedLines(s string) []string {
	var out []string
	for line := range strings.SplitSeq(s, "\n") {
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out
}

// excerptOfAny reports whether the block's lines are a subsequence of one source.
func excerptOfAny(block string, sources [][]string) bool {
	want := trimmedLines(block)
	for _, src := range sources {
		i := 0
		for _, line := range src {
			if i < len(want) && line == want[i] {
				i++
			}
		}
		if i == len(want) {
			return true
		}
	}
	return false
}
