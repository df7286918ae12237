// Package difftest holds the differential test of the two stores: the same
// seeded, random sequence of calls runs against pgstore and sqlitecompat, and
// after every call the results and everything a caller can see (workflows, runs,
// tasks, deferred jobs, logs, pages) must be equal, up to ids and timestamps. A
// rule that drifts in one store fails it. It imports both stores, which nothing
// else may.
package difftest
