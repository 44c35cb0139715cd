package settingsstore_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/magicads/r2storage/host/settingsstore"
	"github.com/magicads/r2storage/internal/testdb"
)

// TestUpdateRefusesToMoveASecret: changing where the R2 secret is sent
// (endpoint, account id, jurisdiction) without re-entering it is a field
// error on the secret and writes nothing; re-entering it saves; an unchanged
// endpoint with a blank secret still keeps the stored one.
func TestUpdateRefusesToMoveASecret(t *testing.T) {
	eachDialect(t, func(t *testing.T, db *testdb.DB) {
		ctx := context.Background()
		s := settingsstore.New(db.DB, keyring(t, newKey(t)))
		schema := r2Schema(t)
		register(t, db, r2Entry, r2Owner)

		first := r2Values(t)
		first["endpoint"] = "https://r2.example.com"
		secret := first["secret_access_key"].(string)
		if _, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, first); err != nil || fields != nil {
			t.Fatalf("first Update: %v %v", fields, err)
		}
		// same returns the stored values with a blank secret and kv applied.
		same := func(kv ...any) map[string]any {
			in := map[string]any{}
			for k, v := range first {
				in[k] = v
			}
			in["secret_access_key"] = ""
			for i := 0; i < len(kv); i += 2 {
				if kv[i+1] == nil {
					delete(in, kv[i].(string))
					continue
				}
				in[kv[i].(string)] = kv[i+1]
			}
			return in
		}

		for name, in := range map[string]map[string]any{
			"endpoint":             same("endpoint", "https://attacker.example"),
			"endpoint removed":     same("endpoint", nil),
			"account_id":           same("account_id", randomHex(t, 16)),
			"account_id cleared":   same("account_id", ""),
			"jurisdiction":         same("jurisdiction", "fedramp"),
			"jurisdiction default": same("jurisdiction", nil),
		} {
			before, beforeKey, beforeUpdated := raw(t, db, r2Entry)
			saved, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, in)
			if err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			if saved != nil || len(fields) != 1 || fields[0].Field != "secret_access_key" || !bytes.Contains([]byte(fields[0].Message), []byte("re-enter the Secret Access Key")) {
				t.Errorf("%s changed with a blank secret: saved %v, fields %v; want one error on secret_access_key", name, saved != nil, fields)
			}
			for _, f := range fields {
				assertNoSecret(t, "field message", f.Message, secret)
			}
			after, afterKey, afterUpdated := raw(t, db, r2Entry)
			if !bytes.Equal(before, after) || beforeKey != afterKey || beforeUpdated != afterUpdated {
				t.Errorf("%s: a refused Update changed the stored entry", name)
			}
		}

		// The secret error comes with the other field problems.
		bad := same("endpoint", "https://attacker.example", "bucket", "Bad_Name")
		if _, fields, _ := s.Update(ctx, r2Entry, r2Owner, schema, bad); len(fields) != 2 || fields[0].Field != "bucket" || fields[1].Field != "secret_access_key" {
			t.Errorf("fields %v, want bucket and secret_access_key", fields)
		}

		// Unchanged endpoint, blank secret: kept.
		if _, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, same("bucket", "other-bucket")); err != nil || fields != nil {
			t.Fatalf("unchanged endpoint: %v %v", fields, err)
		}
		if got, _ := s.Load(ctx, r2Entry); got["secret_access_key"] != secret || got["bucket"] != "other-bucket" {
			t.Errorf("unchanged endpoint did not keep the secret: %v", schema.Public(got))
		}

		// Re-entered: saved with the new endpoint.
		moved := same("endpoint", "https://new.example.com", "secret_access_key", secret)
		if _, fields, err := s.Update(ctx, r2Entry, r2Owner, schema, moved); err != nil || fields != nil {
			t.Fatalf("re-entered secret: %v %v", fields, err)
		}
		if got, _ := s.Load(ctx, r2Entry); got["secret_access_key"] != secret || got["endpoint"] != "https://new.example.com" {
			t.Errorf("after re-entering: %v", schema.Public(got))
		}
	})
}
