package main

import (
	"context"
	"fmt"
	"io"

	"github.com/orkstate/orkstate"
)

// printKeySlots adds status's line per concurrency key: its tasks in flight against
// its slots (issue 13).
func printKeySlots(ctx context.Context, st orkstate.Store, w io.Writer) error {
	keys, err := st.ConcurrencyKeys(ctx)
	if err != nil {
		return err
	}
	for _, k := range keys {
		slots := "unlimited"
		if k.Slots > 0 {
			slots = fmt.Sprint(k.Slots)
		}
		fmt.Fprintf(w, "  key %-10s %8d  in flight of %s slots\n", k.Key, k.InFlight, slots)
	}
	return nil
}
