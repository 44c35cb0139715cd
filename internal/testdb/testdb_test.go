package testdb

import (
	"context"
	"testing"
)

func TestOpenMigrates(t *testing.T) {
	for _, d := range Dialects() {
		t.Run(string(d), func(t *testing.T) {
			db := Open(t, d)
			var n int
			if err := db.QueryRowContext(context.Background(), "SELECT COUNT(*) FROM results").Scan(&n); err != nil || n != 0 {
				t.Fatalf("results table: %d, %v", n, err)
			}
		})
	}
}
