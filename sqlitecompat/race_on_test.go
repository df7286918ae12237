//go:build race

package sqlitecompat_test

// fairTasks is TestTwoHandlesShareClaimsFairly's size: the race detector makes each
// claim several times slower, and a short run is enough to check for races.
const fairTasks = 300
