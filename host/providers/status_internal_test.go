package providers

import (
	"strings"
	"testing"
)

// TestEveryConditionHasOneRow: each condition the status rules name is
// explained by exactly one troubleshooting row, which gives it a status
// and a page; each cell is plain text a Markdown table row can hold.
func TestEveryConditionHasOneRow(t *testing.T) {
	seen := map[Condition]bool{}
	for _, r := range rules {
		if seen[r.cond] {
			t.Errorf("condition %s has two rules", r.cond)
		}
		seen[r.cond] = true
		n := 0
		for _, row := range troubleshooting {
			for _, c := range row.When {
				if c == r.cond {
					n++
				}
			}
		}
		if n != 1 {
			t.Errorf("condition %s is explained by %d rows, want 1", r.cond, n)
		}
	}
	for i, row := range troubleshooting {
		for _, c := range row.When {
			if !seen[c] {
				t.Errorf("row %d names condition %s, which no rule tests", i+1, c)
			}
		}
		if len(row.When) > 0 {
			switch {
			case row.Status != StatusDegraded && row.Status != StatusFailing:
				t.Errorf("row %d: status %q", i+1, row.Status)
			case row.FixPage != PageSettings && row.FixPage != PagePlugins:
				t.Errorf("row %d: page %q", i+1, row.FixPage)
			}
		}
		for _, cell := range []string{row.Symptom, row.Cause, row.Fix} {
			if cell == "" || strings.ContainsAny(cell, "|`\n") || strings.TrimSpace(cell) != cell {
				t.Errorf("row %d: cell %q must be non-empty plain text without | or `", i+1, cell)
			}
		}
	}
	// The rules that make a provider no option come first, so that an
	// option's rules never hide why a provider is not one.
	option := false
	for _, r := range rules {
		if option && !r.option {
			t.Errorf("rule %s (no option) comes after an option's rule", r.cond)
		}
		option = option || r.option
	}
}
