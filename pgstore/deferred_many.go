package pgstore

import (
	"context"

	"github.com/orkstate/orkstate"
)

// GetDeferredJobs returns the deferred jobs with the given ids in one query, in id
// order; ids that do not exist are left out. The triggerer reads the jobs of every
// poll River hands out at once this way instead of one GetDeferredJob each.
func (s *Store) GetDeferredJobs(ctx context.Context, ids []int64) ([]orkstate.DeferredJob, error) {
	if len(ids) == 0 {
		return []orkstate.DeferredJob{}, nil
	}
	rows, err := s.db.Query(ctx, s.sql(`select `+deferredJobColumns+` from {ork}.deferred_jobs where id = any($1) order by id`), ids)
	if err != nil {
		return nil, wrap(err, "pgstore: get %d deferred jobs", len(ids))
	}
	jobs, err := scanDeferredJobs(rows)
	return jobs, wrap(err, "pgstore: get %d deferred jobs", len(ids))
}
