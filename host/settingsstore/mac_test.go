package settingsstore_test

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestMAC: a MAC verifies under the key that made it, for its purpose and
// message only; a previous key still verifies (reported as not current);
// an unrelated key does not; no MAC is the raw HMAC under APP_KEY itself.
func TestMAC(t *testing.T) {
	oldKey, curKey := newKey(t), newKey(t)
	old, err := settingsstore.NewKeyring(oldKey)
	if err != nil {
		t.Fatal(err)
	}
	msg := []byte("cloudflare-r2 1.0.0")
	sum, err := old.MAC("plugin install record v1", msg)
	if err != nil || len(sum) != 32 {
		t.Fatalf("MAC: %x %v", sum, err)
	}
	if ok, cur := old.VerifyMAC("plugin install record v1", msg, sum); !ok || !cur {
		t.Fatalf("own MAC: ok %v current %v", ok, cur)
	}
	for _, c := range []struct {
		purpose string
		msg     []byte
	}{
		{"other purpose", msg},
		{"plugin install record v1", []byte("cloudflare-r2 9.9.9")},
	} {
		if ok, _ := old.VerifyMAC(c.purpose, c.msg, sum); ok {
			t.Fatalf("MAC verified for %q %q", c.purpose, c.msg)
		}
	}
	if _, err := old.MAC("", msg); err == nil {
		t.Fatal("MAC with an empty purpose")
	}

	rotated, err := settingsstore.NewKeyring(curKey, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if ok, cur := rotated.VerifyMAC("plugin install record v1", msg, sum); !ok || cur {
		t.Fatalf("MAC by a previous key: ok %v current %v (want true, false)", ok, cur)
	}
	fresh, _ := rotated.MAC("plugin install record v1", msg)
	if bytes.Equal(fresh, sum) {
		t.Fatal("a new key made the same MAC")
	}
	only, _ := settingsstore.NewKeyring(curKey)
	if ok, _ := only.VerifyMAC("plugin install record v1", msg, sum); ok {
		t.Fatal("a MAC by an unrelated key verified")
	}
	if ok, _ := only.VerifyMAC("plugin install record v1", msg, nil); ok {
		t.Fatal("an empty MAC verified")
	}
}

// TestRegisterDelete: Register creates an unconfigured entry once and never
// touches an existing one; Delete removes it (twice is fine).
func TestRegisterDelete(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		s := settingsstore.New(db.DB, keyring(t, newKey(t)))
		const name = "storage.provider.example"
		if err := s.Register(ctx, name, "example"); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Load(ctx, name); !errors.Is(err, settingsstore.ErrNotConfigured) {
			t.Fatalf("registered entry: %v, want ErrNotConfigured", err)
		}
		if err := s.Save(ctx, name, "example", map[string]any{"bucket": "media"}); err != nil {
			t.Fatal(err)
		}
		if err := s.Register(ctx, name, "example"); err != nil {
			t.Fatal(err)
		}
		if v, err := s.Load(ctx, name); err != nil || v["bucket"] != "media" {
			t.Fatalf("Register changed a configured entry: %v %v", v, err)
		}
		for range 2 {
			if err := s.Delete(ctx, name); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := s.Load(ctx, name); !errors.Is(err, settingsstore.ErrNotFound) {
			t.Fatalf("deleted entry: %v, want ErrNotFound", err)
		}
		if err := s.Register(ctx, name, ""); err == nil {
			t.Fatal("Register with an empty owner")
		}
	})
}
