package results

import (
	"strings"
	"testing"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestClaimReadsOnlyItsNodesRange: SQLite answers the claim and the
// next-due look-up with one range of jobs_node_due_idx per half (this
// node's jobs, any node's), never a walk over the jobs that wait for
// other nodes.
func TestClaimReadsOnlyItsNodesRange(t *testing.T) {
	db := testdb.Open(t, dbmigrate.SQLite)
	for name, q := range map[string]struct {
		query string
		args  []any
	}{
		"claim":    {claimQuery, []any{"2026-01-01", jobQueued, "node-a"}},
		"next due": {nextDueQuery, []any{jobQueued, "node-a"}},
	} {
		plan := queryPlan(t, db.DB, q.query, q.args...)
		searches := 0
		for _, step := range plan {
			if strings.Contains(step, "jobs") {
				if !strings.Contains(step, "jobs_node_due_idx (node=?") {
					t.Fatalf("%s reads jobs with %q; want a range of jobs_node_due_idx (plan %q)", name, step, plan)
				}
				searches++
			}
		}
		if searches != 2 {
			t.Fatalf("%s: %d reads of jobs, want 2 (plan %q)", name, searches, plan)
		}
	}
}
