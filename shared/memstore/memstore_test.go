package memstore_test

import (
	"testing"

	"github.com/magicads/r2storage/shared/conformance"
	"github.com/magicads/r2storage/shared/memstore"
)

func TestConformance(t *testing.T) {
	s := memstore.New("https://cdn.example.com/media")
	conformance.Run(t, s)
	if keys := s.Keys(); len(keys) != 0 {
		t.Fatalf("the suite left %v", keys)
	}
}
