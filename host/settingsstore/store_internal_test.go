package settingsstore

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/migrations"
)

// TestUndecodableJSONIsCorrupt seals bytes that are not a JSON object with
// the right key and name: they authenticate, but Load must still refuse
// them without quoting them.
func TestUndecodableJSONIsCorrupt(t *testing.T) {
	ctx := context.Background()
	db, d, err := dbmigrate.Open(ctx, filepath.Join(t.TempDir(), "db.sqlite"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	src, err := migrations.FS(string(d))
	if err != nil {
		t.Fatal(err)
	}
	if err := dbmigrate.Up(ctx, db, d, src, dbmigrate.HostTable); err != nil {
		t.Fatal(err)
	}
	k, err := GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	kr, err := NewKeyring(k)
	if err != nil {
		t.Fatal(err)
	}
	s := New(db, kr)
	const name = "entry.json"
	for _, plain := range []string{"sk-plain-marker-not-json", "null", `["a"]`, `"str"`, `{"a":`} {
		blob := []byte{blobVersion, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
		blob = k.aead.Seal(blob, blob[1:1+nonceSize], []byte(plain), []byte(name))
		if _, err := db.ExecContext(ctx, `INSERT INTO settings (name, owner, value, key_id) VALUES ($1, 'host', $2, $3)
ON CONFLICT (name) DO UPDATE SET value = excluded.value, key_id = excluded.key_id`, name, blob, k.ID()); err != nil {
			t.Fatal(err)
		}
		_, err := s.Load(ctx, name)
		var ce *CorruptError
		if !errors.As(err, &ce) || !strings.Contains(err.Error(), "not a JSON object") {
			t.Errorf("plaintext %q: %v", plain, err)
		}
		if strings.Contains(err.Error(), "marker") {
			t.Errorf("error quotes the decrypted bytes: %v", err)
		}
	}
}
