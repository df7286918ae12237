package orkstate

import "context"

// ReportClaimer is implemented by the stores that can report and claim in one call:
// pgstore.Store (one SQL function, report_and_claim: one round trip and one commit)
// and sqlitecompat.Store (one write transaction). It is not part of Store, so a Store
// of another kind need not have it; a scheduler loop checks for it and otherwise calls
// SetTaskStates and ClaimTasks in turn, which does the same in two transactions.
type ReportClaimer interface {
	// ReportAndClaim applies updates exactly as SetTaskStates does, then claims
	// exactly as ClaimTasks does, in one transaction: the claim sees the reports'
	// effects, so a task a report made ready may be among the claimed. It returns
	// one outcome per update, in input order, and the claimed tasks. updates may be
	// empty (the call is then a claim). Bad input on either side (an unknown status,
	// a claim without a claimer, a limit out of range) is an error and changes
	// nothing: no report is applied and nothing is claimed.
	ReportAndClaim(ctx context.Context, updates []TaskUpdate, p ClaimParams) ([]TaskOutcome, []ClaimedTask, error)
}
