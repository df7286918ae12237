package statefile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/limitsfixture"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/statefile"
)

func encode(t *testing.T, d *statefile.Document) string {
	t.Helper()
	var b bytes.Buffer
	if err := d.Encode(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

var stores = map[string]func(t *testing.T) orkstate.Store{
	"sqlite":   func(t *testing.T) orkstate.Store { return openSQLite(t) },
	"postgres": func(t *testing.T) orkstate.Store { return testdb.Store(t) },
}

// TestLimitsRoundTrip: keys, workflow limits, the specs' and the tasks' priorities
// and keys go through a file between every pair of stores: export → decode →
// import → export gives the same bytes, and the keys' tasks in flight are counted.
func TestLimitsRoundTrip(t *testing.T) {
	t.Parallel()
	for srcName, newSrc := range stores {
		for dstName, newDst := range stores {
			t.Run(srcName+"→"+dstName, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				src := newSrc(t)
				limitsfixture.Seed(t, src)
				doc, err := statefile.Export(ctx, src, nil)
				if err != nil {
					t.Fatal(err)
				}
				want := encode(t, doc)
				for _, s := range []string{`"version": 2`, `"key": "gpu",` + "\n" + `      "slots": 1`, `"max_active_runs": 3`,
					`"max_tasks_in_flight": 4`, `"fair": true`, `"priority": 9`, `"priority_override": -5`, `"concurrency_key": "warehouse-7"`} {
					if !strings.Contains(want, s) {
						t.Errorf("the export lacks %s:\n%s", s, want)
					}
				}
				read, err := statefile.Decode(strings.NewReader(want))
				if err != nil {
					t.Fatal(err)
				}
				dst := newDst(t)
				if _, err := statefile.Import(ctx, read, dst, nil); err != nil {
					t.Fatal(err)
				}
				again, err := statefile.Export(ctx, dst, nil)
				if err != nil {
					t.Fatal(err)
				}
				if got := encode(t, again); got != want {
					t.Errorf("export → import → export differs:\n%s\n---\n%s", want, got)
				}
				keys, err := dst.ConcurrencyKeys(ctx)
				if err != nil || len(keys) != 2 || keys[0] != (orkstate.ConcurrencyKey{Key: "gpu", Slots: 1, InFlight: 1}) {
					t.Errorf("keys after import: %+v %v", keys, err)
				}
			})
		}
	}
}

// TestVersion1Imports: a document written by the version-1 writer (committed in
// testdata) still decodes, imports into either store as a store without
// priorities, limits or keys, and exports as version 2 with nothing else changed.
func TestVersion1Imports(t *testing.T) {
	t.Parallel()
	v1, err := os.ReadFile("testdata/v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(v1, []byte(`"version": 1,`)) {
		t.Fatal("testdata/v1.json is not a version 1 document")
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			doc, err := statefile.Decode(bytes.NewReader(v1))
			if err != nil {
				t.Fatal(err)
			}
			if doc.Version != statefile.Version {
				t.Errorf("decoded version %d, want %d", doc.Version, statefile.Version)
			}
			dst := open(t)
			if _, err := statefile.Import(ctx, doc, dst, nil); err != nil {
				t.Fatal(err)
			}
			again, err := statefile.Export(ctx, dst, nil)
			if err != nil {
				t.Fatal(err)
			}
			if got, want := encode(t, again), encode(t, doc); got != want {
				t.Errorf("the version 1 document, imported and exported, differs from it read:\n%s\n---\n%s", want, got)
			}
			// Nothing but the version and the new fields differs from the file.
			var a, b any
			if err := json.Unmarshal(v1, &a); err != nil {
				t.Fatal(err)
			}
			if err := json.Unmarshal([]byte(encode(t, again)), &b); err != nil {
				t.Fatal(err)
			}
			b.(map[string]any)["version"] = 1.0
			strip(b, map[string]any{"concurrency_keys": []any{}, "priority": nil, "max_active_runs": nil,
				"max_tasks_in_flight": nil, "fair": false, "concurrency_key": "", "priority_override": nil})
			if !reflect.DeepEqual(a, b) {
				t.Errorf("the import changed more than the new fields:\n%s\n---\n%v", v1, b)
			}
		})
	}
}

// strip deletes, everywhere in v, the fields named in zero that hold their zero
// value there (a task's priority 0 or a spec's null).
func strip(v any, zero map[string]any) {
	switch x := v.(type) {
	case map[string]any:
		for k, val := range x {
			if z, ok := zero[k]; ok && (reflect.DeepEqual(val, z) || (k == "priority" && val == 0.0)) {
				delete(x, k)
				continue
			}
			strip(val, zero)
		}
	case []any:
		for _, e := range x {
			strip(e, zero)
		}
	}
}

// TestDecodeRefusesBadLimits: keys, limits and priorities out of bounds, a
// duplicate key, a run's task naming a key the document lacks, and a version
// from the future are refused, naming where.
func TestDecodeRefusesBadLimits(t *testing.T) {
	t.Parallel()
	run := func(task string) string {
		return `"runs":[{"status":"running","created_at":"2025-01-01T00:00:00Z","tasks":[{"index":0,"name":"x","status":"pending","created_at":"2025-01-01T00:00:00Z"` + task + `}]}]`
	}
	for in, want := range map[string]string{
		`{"format":"orkstate-state","version":3,"workflows":[]}`:                                                                `invalid version "3": written by a newer orkstate; this one reads versions 1 to 2`,
		`{"format":"orkstate-state","version":0,"workflows":[]}`:                                                                `invalid version "0": this orkstate reads versions 1 to 2`,
		`{"format":"orkstate-state","version":2,"concurrency_keys":[{"key":"gpu","slots":0}],"workflows":[]}`:                   `concurrency_keys[0] "gpu": orkstate: invalid slots "0": must be between 1 and 1000000`,
		`{"format":"orkstate-state","version":2,"concurrency_keys":[{"key":"gpu","slots":1},{"key":"gpu","slots":2}]}`:          `concurrency_keys[1]: orkstate: invalid key "gpu": duplicate concurrency key`,
		`{"format":"orkstate-state","version":2,"concurrency_keys":[{"key":" gpu","slots":1}]}`:                                 `concurrency_keys[0]: orkstate: invalid concurrency_key " gpu"`,
		`{"format":"orkstate-state","version":2,"workflows":[{"name":"a","priority":5000}]}`:                                    `workflows[0] "a": orkstate: invalid priority "5000": must be between -1000 and 1000`,
		`{"format":"orkstate-state","version":2,"workflows":[{"name":"a","max_active_runs":0}]}`:                                `workflows[0] "a": orkstate: invalid max_active_runs "0"`,
		`{"format":"orkstate-state","version":2,"workflows":[{"name":"a","tasks":[{"name":"x","priority":-1001}]}]}`:            `task "x": orkstate: invalid priority "-1001"`,
		`{"format":"orkstate-state","version":2,"workflows":[{"name":"a",` + run(`,"concurrency_key":"gpu"`) + `}]}`:            `runs[0]: tasks[0] "x": orkstate: invalid concurrency_key "gpu": not among the document's concurrency_keys`,
		`{"format":"orkstate-state","version":2,"workflows":[{"name":"a",` + run(`,"priority":3,"priority_override":4`) + `}]}`: `runs[0]: orkstate: invalid priority "3": task "x": must equal its priority_override 4`,
		`{"format":"orkstate-state","version":2,"workflows":[{"name":"a",` + run(`,"priority":3000`) + `}]}`:                    `runs[0]: task "x": orkstate: invalid priority "3000"`,
	} {
		_, err := statefile.Decode(strings.NewReader(in))
		if !orkstate.IsValidation(err) || !strings.Contains(err.Error(), want) {
			t.Errorf("Decode(%s) = %v, want a validation error containing %q", in, err, want)
		}
	}
}
