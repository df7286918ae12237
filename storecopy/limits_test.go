package storecopy_test

import (
	"context"
	"fmt"
	"reflect"
	"sort"
	"strings"
	"testing"

	"github.com/orkstate/orkstate"
	"github.com/orkstate/orkstate/internal/limitsfixture"
	"github.com/orkstate/orkstate/internal/testdb"
	"github.com/orkstate/orkstate/storecopy"
)

// limitsView is what a store holds of priorities, keys and limits, without ids.
type limitsView struct {
	Keys      []orkstate.ConcurrencyKey
	Workflows map[string]workflowLimits
}

type workflowLimits struct {
	Limits   orkstate.WorkflowLimits
	Compiled []orkstate.TaskSpec
	Snapshot []orkstate.TaskSpec
	Tasks    []string // name status priority override key, by name
}

func viewLimits(t *testing.T, s orkstate.Store) limitsView {
	t.Helper()
	ctx := context.Background()
	keys, err := s.ConcurrencyKeys(ctx)
	if err != nil {
		t.Fatal(err)
	}
	v := limitsView{Keys: keys, Workflows: map[string]workflowLimits{}}
	wfs, err := s.ListWorkflows(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, wf := range wfs {
		var w workflowLimits
		l, err := s.GetWorkflowLimits(ctx, wf.ID)
		if err != nil {
			t.Fatal(err)
		}
		w.Limits = *l
		wts, err := s.ListWorkflowTasks(ctx, wf.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range wts {
			x.Params, x.Signature = nil, nil
			w.Compiled = append(w.Compiled, x.TaskSpec)
		}
		if wf.CurrentSnapshotID != nil {
			sn, err := s.GetSnapshot(ctx, *wf.CurrentSnapshotID)
			if err != nil {
				t.Fatal(err)
			}
			w.Snapshot = sn.Tasks
		}
		runs, err := s.ListRuns(ctx, wf.ID)
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range runs {
			tasks, err := s.ListTasks(ctx, r.ID)
			if err != nil {
				t.Fatal(err)
			}
			for _, k := range tasks {
				o := "-"
				if k.PriorityOverride != nil {
					o = fmt.Sprint(*k.PriorityOverride)
				}
				w.Tasks = append(w.Tasks, fmt.Sprintf("%s %s priority %d override %s key %q", k.TaskName, k.Status, k.Priority, o, k.ConcurrencyKey))
			}
		}
		sort.Strings(w.Tasks)
		v.Workflows[wf.Name] = w
	}
	return v
}

// TestCopyCarriesLimits: keys with their slots and tasks in flight, workflow
// priorities, limits and fairness, the specs' priorities and keys, and every task's
// priority, override and key arrive, between every pair of stores; and the copy
// enforces them: the key's slot held in the source is held in the copy.
func TestCopyCarriesLimits(t *testing.T) {
	t.Parallel()
	stores := map[string]func(*testing.T) orkstate.Store{
		"sqlite":   func(t *testing.T) orkstate.Store { return open(t) },
		"postgres": func(t *testing.T) orkstate.Store { return testdb.Store(t) },
	}
	for srcName, newSrc := range stores {
		for dstName, newDst := range stores {
			t.Run(srcName+"→"+dstName, func(t *testing.T) {
				t.Parallel()
				ctx := context.Background()
				src, dst := newSrc(t), newDst(t)
				limitsfixture.Seed(t, src)
				want := viewLimits(t, src)
				if got := want.Keys; len(got) != 2 || got[0].InFlight != 1 {
					t.Fatalf("source keys %+v, want gpu with 1 in flight", got)
				}
				if _, err := storecopy.Copy(ctx, src, dst); err != nil {
					t.Fatal(err)
				}
				if got := viewLimits(t, dst); !reflect.DeepEqual(got, want) {
					t.Errorf("the copy differs:\n src %+v\n dst %+v", want, got)
				}
				// gpu has 1 slot and train holds it in the copy too: train2 waits.
				c, err := dst.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "s2", Limit: 10, ExecutorTypes: []string{"gpu"}})
				if err != nil {
					t.Fatal(err)
				}
				if len(c) != 0 {
					t.Errorf("claimed %+v in the copy, want nothing (gpu's one slot is train's)", c)
				}
				// warehouse-7's load goes, at its priority (the workflow's when it became ready).
				c, err = dst.ClaimTasks(ctx, orkstate.ClaimParams{Claimer: "s2", Limit: 10})
				if err != nil {
					t.Fatal(err)
				}
				if len(c) != 1 || c[0].TaskName != "load" {
					t.Errorf("claimed %+v in the copy, want load", c)
				}
			})
		}
	}
}

// TestCopyReplayCarriesLimits: the replay (a destination without RunImporter)
// carries keys, limits, specs and each task's own priority and key; a task without
// one takes its workflow's present priority.
func TestCopyReplayCarriesLimits(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src, dst := open(t), open(t)
	limitsfixture.Seed(t, src)
	if _, err := storecopy.Copy(ctx, src, struct{ orkstate.Store }{dst}); err != nil {
		t.Fatal(err)
	}
	want, got := viewLimits(t, src), viewLimits(t, dst)
	want.Keys[0].InFlight = 0 // train arrives pending: a claim cannot be copied
	if !reflect.DeepEqual(got.Keys, want.Keys) {
		t.Errorf("keys %+v, want %+v", got.Keys, want.Keys)
	}
	w, g := want.Workflows["etl"], got.Workflows["etl"]
	if !reflect.DeepEqual(g.Limits, w.Limits) || !reflect.DeepEqual(g.Compiled, w.Compiled) || !reflect.DeepEqual(g.Snapshot, w.Snapshot) {
		t.Errorf("workflow etl:\n src %+v\n dst %+v", w, g)
	}
	wantTasks := []string{
		`load pending priority 2 override - key "warehouse-7"`,
		`mail pending priority 2 override - key ""`,
		`report pending priority -5 override -5 key ""`,
		`train pending priority 9 override 9 key "gpu"`,
		`train2 pending priority 2 override - key "gpu"`,
	}
	if !reflect.DeepEqual(g.Tasks, wantTasks) {
		t.Errorf("tasks\n %q\nwant\n %q", g.Tasks, wantTasks)
	}
}

// zeroSlotKeys reports every concurrency key with Slots 0, as a store whose keys
// only count would (pgstore made such keys before schema version 9).
type zeroSlotKeys struct{ orkstate.Store }

func (z zeroSlotKeys) ConcurrencyKeys(ctx context.Context) ([]orkstate.ConcurrencyKey, error) {
	keys, err := z.Store.ConcurrencyKeys(ctx)
	for i := range keys {
		keys[i].Slots = 0
	}
	return keys, err
}

// TestCopyRefusesKeyWithoutSlots: a key without a slot count cannot be set through
// the contract: the copy stops before it writes anything, naming the key.
func TestCopyRefusesKeyWithoutSlots(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	src := open(t)
	if err := src.SetConcurrencyKey(ctx, "counted", 3); err != nil {
		t.Fatal(err)
	}
	if _, err := src.CreateWorkflow(ctx, orkstate.NewWorkflow{Name: "w"}); err != nil {
		t.Fatal(err)
	}
	dst := open(t)
	_, err := storecopy.Copy(ctx, zeroSlotKeys{src}, dst)
	if !orkstate.IsValidation(err) || !strings.Contains(err.Error(), `concurrency key "counted" has no slot count`) {
		t.Fatalf("copy: %v, want a validation error naming the key", err)
	}
	if wfs, _ := dst.ListWorkflows(ctx); len(wfs) != 0 {
		t.Errorf("%d workflows copied", len(wfs))
	}
	if keys, _ := dst.ConcurrencyKeys(ctx); len(keys) != 0 {
		t.Errorf("keys copied: %+v", keys)
	}
}
