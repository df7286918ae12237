// Package orkstate is the state store of a workflow orchestrator: workflows,
// runs, DAG tasks and deferred jobs, with the hot paths (claiming dispatchable
// tasks, applying status changes in batches, claiming deferred-job polls) built
// into PostgreSQL.
//
// This package holds the domain types, the statuses and their state machines, the
// errors, and the Store contract. It imports no database driver: pgstore
// implements the contract on PostgreSQL, sqlitecompat on a single SQLite file,
// and storetest is the conformance suite both pass.
package orkstate
