//go:build !race

package difftest

// Steps per seed and the seeds of a normal run (about 10 s); DIFFTEST_STEPS and
// DIFFTEST_SEED override them for a longer soak.
const defaultSteps = 200

var defaultSeeds = []uint64{1, 2, 3}
