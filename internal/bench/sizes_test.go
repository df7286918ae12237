package bench_test

import (
	"reflect"
	"strings"
	"testing"

	"github.com/orkstate/orkstate/internal/bench"
)

// TestSizesSet: `orkstate bench -set Field=value` changes one field of the preset;
// an unknown field or a bad value is an error naming it, and changes nothing.
func TestSizesSet(t *testing.T) {
	s := bench.QuickSizes()
	for _, v := range []string{"Blocked=0,1000000", "Reps=5", "OpenLoopLoads=0.5, 0.9", "ChurnCompare=true"} {
		if err := s.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	if !reflect.DeepEqual(s.Blocked, []int{0, 1000000}) || s.Reps != 5 ||
		!reflect.DeepEqual(s.OpenLoopLoads, []float64{0.5, 0.9}) || !s.ChurnCompare {
		t.Errorf("sizes after Set: Blocked %v Reps %d OpenLoopLoads %v ChurnCompare %v", s.Blocked, s.Reps, s.OpenLoopLoads, s.ChurnCompare)
	}
	before := s
	for v, want := range map[string]string{
		"Nope=1":       `no size named "Nope"`,
		"Reps=many":    `size Reps="many"`,
		"Blocked=1,x":  `size Blocked="1,x"`,
		"Reps":         `want Field=value`,
		"ClaimBatch=":  `size ClaimBatch=""`,
		"Blocked=1,,2": `size Blocked="1,,2"`,
	} {
		if err := s.Set(v); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Set(%q): %v, want an error containing %s", v, err, want)
		}
	}
	if !reflect.DeepEqual(s, before) {
		t.Errorf("a refused Set changed the sizes")
	}
}
