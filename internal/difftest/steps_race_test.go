//go:build race

package difftest

// Under the race detector every call is several times slower: one short sequence
// checks the harness for races, the normal run checks the stores.
const defaultSteps = 60

var defaultSeeds = []uint64{1}
