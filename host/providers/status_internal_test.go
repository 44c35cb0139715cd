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
			case row.Status != StatusDegraded && row.Status != StatusFailing && row.Status != StatusUnknown:
				t.Errorf("row %d: status %q", i+1, row.Status)
			case row.FixPage != PageSettings && row.FixPage != PagePlugins && row.FixPage != PageStorage:
				t.Errorf("row %d: page %q", i+1, row.FixPage)
			}
		}
		for _, cell := range []string{row.OtherCause, row.OtherFix} {
			if strings.ContainsAny(cell, "|`\n") || strings.TrimSpace(cell) != cell {
				t.Errorf("row %d: other-provider cell %q must be plain text without | or `", i+1, cell)
			}
		}
		if row.OtherFix != "" && !strings.Contains(row.OtherFix, providerName) {
			t.Errorf("row %d: other-provider fix %q does not name the provider (%s)", i+1, row.OtherFix, providerName)
		}
		for _, cell := range []string{row.Symptom, row.Cause, row.Fix} {
			if cell == "" || strings.ContainsAny(cell, "|`\n") || strings.TrimSpace(cell) != cell {
				t.Errorf("row %d: cell %q must be non-empty plain text without | or `", i+1, cell)
			}
		}
	}
	// The rules that make a provider no option come first, so that an
	// option's rules never hide why a provider is not one; the rules that
	// apply to local are option rules.
	option := false
	for _, r := range rules {
		if option && !r.option {
			t.Errorf("rule %s (no option) comes after an option's rule", r.cond)
		}
		if r.jobsOnly && !r.option {
			t.Errorf("rule %s reads only jobs but is no option rule", r.cond)
		}
		option = option || r.option
	}
}

// TestRowsForOtherProviders: a row's Other wording replaces its own for
// any provider but Cloudflare R2, with the provider's name.
func TestRowsForOtherProviders(t *testing.T) {
	r := troubleFor(CondDenied)
	if c, f := r.For(r2ID, "Cloudflare R2 Storage"); c != r.Cause || f != r.Fix {
		t.Errorf("R2: %q %q", c, f)
	}
	c, f := r.For("b2", "Backblaze B2")
	if c != r.OtherCause || f != strings.ReplaceAll(r.OtherFix, providerName, "Backblaze B2") || !strings.Contains(f, "Backblaze B2") || strings.Contains(f, "R2") {
		t.Errorf("another provider: %q %q", c, f)
	}
	r = troubleFor(CondSettingsRefused)
	if c, f := r.For("b2", "Backblaze B2"); c != r.Cause || f != r.Fix {
		t.Errorf("a row fit for any provider: %q %q", c, f)
	}
	// No row that a provider's status names speaks of R2 to another one.
	for i, row := range troubleshooting {
		if len(row.When) == 0 {
			continue
		}
		c, f := row.For("b2", "Backblaze B2")
		for _, cell := range []string{row.SymptomFor("b2", "Backblaze B2"), c, f} {
			for _, w := range []string{"R2", "r2.dev", "account id", "API token"} {
				if strings.Contains(cell, w) {
					t.Errorf("row %d, for another provider: %q names %q", i+1, cell, w)
				}
			}
		}
	}
}
