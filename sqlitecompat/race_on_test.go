//go:build race

package sqlitecompat_test

// fairTasks is TestTwoHandlesShareClaimsFairly's size: the race detector makes each
// claim several times slower, and a short run is enough to check for races.
const fairTasks = 300

// concurrencyTasks is storetest's claim race (Concurrency/ClaimersEachTaskOnce):
// under the race detector every SQLite call, Go code through and through, is many
// times slower (221 s for the default 20,000 tasks on 2 cores), and 2,000 tasks
// find the same data races.
const concurrencyTasks = 2000
