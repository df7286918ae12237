//go:build !race

package sqlitecompat_test

// fairTasks is TestTwoHandlesShareClaimsFairly's size.
const fairTasks = 2000
