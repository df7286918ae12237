//go:build !race

package sqlitecompat_test

// fairTasks is TestTwoHandlesShareClaimsFairly's size.
const fairTasks = 2000

// concurrencyTasks is storetest's claim race: 0 keeps the suite's default.
const concurrencyTasks = 0
