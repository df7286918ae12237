//go:build !unix

package bench

import "time"

// processCPU is not measured here (no getrusage); machineBusy has no /proc/stat
// either, so no CPU column is printed.
func processCPU() time.Duration { return 0 }
