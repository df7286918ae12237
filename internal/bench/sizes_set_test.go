package bench

import (
	"reflect"
	"strings"
	"testing"
)

func TestSizesSet(t *testing.T) {
	s := QuickSizes()
	for _, kv := range [][2]string{{"churntasks", "2000000"}, {"Claimers", "1/8"}, {"OpenLoopLoads", "0.5"}, {"ChurnCompare", "true"}} {
		if err := s.Set(kv[0], kv[1]); err != nil {
			t.Fatal(err)
		}
	}
	if s.ChurnTasks != 2_000_000 || !reflect.DeepEqual(s.Claimers, []int{1, 8}) ||
		!reflect.DeepEqual(s.OpenLoopLoads, []float64{0.5}) || !s.ChurnCompare {
		t.Fatalf("sizes not set: %+v", s)
	}
	before := s
	for _, c := range []struct{ field, value, want string }{
		{"NoSuch", "1", `no size named "NoSuch"`},
		{"Reps", "three", `size Reps: "three" is not a int`},
		{"Claimers", "1/x", `size Claimers: "1/x"`},
	} {
		err := s.Set(c.field, c.value)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Set(%s, %s) = %v, want an error containing %q", c.field, c.value, err, c.want)
		}
	}
	if !reflect.DeepEqual(s, before) {
		t.Errorf("a refused Set changed the sizes")
	}
}
