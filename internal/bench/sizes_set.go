package bench

import (
	"fmt"
	"reflect"
	"strconv"
	"strings"
)

// Set changes the size named field (a Sizes field's name, any case) to value: an
// integer, a number, true/false, or a list of them separated by "/" for the list
// fields (Claimers=1/4/8). It is the bench command's -set, for a custom run of one
// scenario at another size without editing a preset.
func (s *Sizes) Set(field, value string) error {
	v := reflect.ValueOf(s).Elem()
	f := v.FieldByNameFunc(func(n string) bool { return strings.EqualFold(n, field) })
	if !f.IsValid() {
		return fmt.Errorf("bench: no size named %q (the fields of bench.Sizes, e.g. ChurnTasks, Reps)", field)
	}
	bad := func(err error) error {
		return fmt.Errorf("bench: size %s: %q is not a %s: %v", field, value, f.Type(), err)
	}
	switch f.Kind() {
	case reflect.Int:
		n, err := strconv.Atoi(value)
		if err != nil {
			return bad(err)
		}
		f.SetInt(int64(n))
	case reflect.Float64:
		x, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return bad(err)
		}
		f.SetFloat(x)
	case reflect.Bool:
		b, err := strconv.ParseBool(value)
		if err != nil {
			return bad(err)
		}
		f.SetBool(b)
	case reflect.Slice:
		parts := strings.Split(value, "/")
		out := reflect.MakeSlice(f.Type(), len(parts), len(parts))
		for i, p := range parts {
			switch f.Type().Elem().Kind() {
			case reflect.Int:
				n, err := strconv.Atoi(p)
				if err != nil {
					return bad(err)
				}
				out.Index(i).SetInt(int64(n))
			case reflect.Float64:
				x, err := strconv.ParseFloat(p, 64)
				if err != nil {
					return bad(err)
				}
				out.Index(i).SetFloat(x)
			default:
				return fmt.Errorf("bench: size %s cannot be set", field)
			}
		}
		f.Set(out)
	default:
		return fmt.Errorf("bench: size %s cannot be set", field)
	}
	return nil
}
