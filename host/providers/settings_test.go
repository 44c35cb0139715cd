package providers_test

import (
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/pluginrt"
	"github.com/magicads/r2storage/host/providers"
	"github.com/magicads/r2storage/internal/testdb"
	"github.com/magicads/r2storage/shared/storage"
)

// fieldMap turns field problems into field → message.
func fieldMap(fields []storage.FieldError) map[string]string {
	m := map[string]string{}
	for _, f := range fields {
		m[f.Field] = f.Message
	}
	return m
}

// TestSaveIsCheckedByThePlugin: a save is checked by the running plugin's
// ValidateSettings on the values as they would be stored (a blank secret
// keeps the stored one) before anything is written; its field problems
// come back as fields, beside the schema's, and nothing is stored.
func TestSaveIsCheckedByThePlugin(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			first := complete()
			e.save(first)
			if e.changes() != 1 {
				t.Fatalf("SettingsChanged called %d times after a save, want 1", e.changes())
			}

			// A public URL the schema's pattern lets through but the plugin
			// refuses; the secret left blank.
			fields, err := e.m.SaveSettings(ctx, pluginID, with(first, "secret_access_key", "", "public_url", "http://host:abc", "bucket", "other-bucket"))
			if err != nil {
				t.Fatal(err)
			}
			if got := fieldMap(fields); len(got) != 1 || got["public_url"] != "fake: must be an http(s) URL" {
				t.Fatalf("fields %v, want the plugin's problem on public_url", got)
			}
			if got := e.stored(); !reflect.DeepEqual(got, first) {
				t.Fatalf("a refused save changed the stored settings: %v", got)
			}
			// Same with the secret given, on a property that binds it.
			fields, err = e.m.SaveSettings(ctx, pluginID, with(first, "endpoint", "http://host:abc"))
			if err != nil || fieldMap(fields)["endpoint"] != "fake: must be an http(s) URL" {
				t.Fatalf("endpoint http://host:abc: fields %v, error %v", fields, err)
			}
			// Schema and plugin problems together, the schema's on its field.
			fields, err = e.m.SaveSettings(ctx, pluginID, with(first, "bucket", "Bad_Bucket", "public_url", "http://host:abc"))
			if got := fieldMap(fields); err != nil || len(got) != 2 || !strings.Contains(got["bucket"], "lowercase") || got["public_url"] != "fake: must be an http(s) URL" {
				t.Fatalf("fields %v, error %v: want the schema's bucket problem and the plugin's public_url one", got, err)
			}
			if got := e.stored(); !reflect.DeepEqual(got, first) {
				t.Fatalf("a refused save changed the stored settings: %v", got)
			}
			if e.changes() != 1 {
				t.Fatalf("SettingsChanged called after refused saves: %d", e.changes())
			}

			// The plugin sees the kept secret: the fake refuses an access
			// key without its secret, so this passes only with the merge.
			e.save(with(first, "secret_access_key", "", "bucket", "other-bucket"))
			if got := e.stored(); got["bucket"] != "other-bucket" || got["secret_access_key"] != "fake-secret-1" {
				t.Fatalf("stored after a save keeping the secret: bucket %v, secret kept %v", got["bucket"], got["secret_access_key"] == "fake-secret-1")
			}
			if e.changes() != 2 {
				t.Fatalf("SettingsChanged called %d times after two saves", e.changes())
			}
		})
	}
}

// TestSaveWhileThePluginIsNotRunning: nothing is stored unchecked. With the
// plugin stopped, a save fails with ErrPluginUnavailable naming its state;
// problems the schema finds are still answered as fields.
func TestSaveWhileThePluginIsNotRunning(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			first := complete()
			e.save(first)
			if err := e.rt.Stop(ctx, pluginID); err != nil {
				t.Fatal(err)
			}
			fields, err := e.m.SaveSettings(ctx, pluginID, with(first, "bucket", "other-bucket"))
			if !errors.Is(err, providers.ErrPluginUnavailable) || len(fields) > 0 || !strings.Contains(err.Error(), "stopped") || !strings.Contains(err.Error(), "nothing was saved") {
				t.Fatalf("save with the plugin stopped: fields %v, error %v", fields, err)
			}
			if strings.Contains(err.Error(), "fake-secret-1") {
				t.Fatalf("the error quotes the secret: %v", err)
			}
			_, _, err = e.m.Test(ctx, pluginID, with(first, "bucket", "other-bucket"))
			if !errors.Is(err, providers.ErrPluginUnavailable) {
				t.Fatalf("test with the plugin stopped: %v", err)
			}
			fields, err = e.m.SaveSettings(ctx, pluginID, with(first, "bucket", "Bad_Bucket"))
			if err != nil || fieldMap(fields)["bucket"] == "" {
				t.Fatalf("schema problem with the plugin stopped: fields %v, error %v", fields, err)
			}
			if got := e.stored(); !reflect.DeepEqual(got, first) {
				t.Fatalf("settings stored while the plugin could not check them: %v", got)
			}
			if e.changes() != 1 {
				t.Fatalf("SettingsChanged called %d times, want 1", e.changes())
			}
		})
	}
}

// TestConnectionTestSaysTheSettingsWereSaved: the test's message says the
// settings were saved, then where and why the connection test failed.
func TestConnectionTestSaysTheSettingsWereSaved(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			res, fields, err := e.m.Test(ctx, pluginID, with(complete(), "bucket", deniedBucket))
			if err != nil || len(fields) > 0 {
				t.Fatalf("fields %v, error %v", fields, err)
			}
			want := `Settings saved, but the connection test failed at upload: permission denied on bucket "denied-bucket" — the token needs Object Read & Write on this bucket`
			if res.OK || res.Step != storage.StepUpload || res.Message != want {
				t.Fatalf("got %+v, want message %q", res, want)
			}
			if got := e.stored(); got["bucket"] != deniedBucket {
				t.Fatalf("the tested settings were not saved: bucket %v", got["bucket"])
			}
			if e.changes() != 1 {
				t.Fatalf("SettingsChanged called %d times, want 1", e.changes())
			}

			res, _, err = e.m.Test(ctx, pluginID, with(complete(), "access_key_id", nil, "secret_access_key", ""))
			want = "Settings saved, but the connection test failed at config: settings incomplete: fill in Access Key ID"
			if err != nil || res.OK || res.Step != storage.StepConfig || !strings.HasPrefix(res.Message, want) {
				t.Fatalf("incomplete: %+v, %v; want a message starting %q", res, err, want)
			}

			res, _, err = e.m.Test(ctx, pluginID, complete())
			if err != nil || !res.OK || res.Message != "Settings saved. Connection successful" {
				t.Fatalf("working settings: %+v, %v", res, err)
			}
		})
	}
}

// TestSaveRacingAnotherSaveIsCheckedAgain: what is written is what the
// plugin checked. A save whose secret is kept checks the values with the
// stored secret; when another save changes that secret before the write,
// the first save is checked again with the new one (here refused) instead
// of writing a combination the plugin never saw.
func TestSaveRacingAnotherSaveIsCheckedAgain(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			e.save(complete())
			type outcome struct {
				fields []storage.FieldError
				err    error
			}
			done := make(chan outcome, 1)
			go func() {
				fields, err := e.m.SaveSettings(ctx, pluginID, with(complete(), "secret_access_key", "", "bucket", slowBucket))
				done <- outcome{fields, err}
			}()
			time.Sleep(slowCheck / 3) // the slow save is being checked
			e.save(with(complete(), "secret_access_key", otherSecret))
			got := <-done
			if got.err != nil || fieldMap(got.fields)["bucket"] != "fake: not with this secret" {
				t.Fatalf("the slow save: fields %v, error %v; want it checked again with the new secret and refused", got.fields, got.err)
			}
			if s := e.stored(); s["bucket"] != "results-bucket" || s["secret_access_key"] != otherSecret {
				t.Fatalf("stored bucket %v, new secret kept %v", s["bucket"], s["secret_access_key"] == otherSecret)
			}
		})
	}
}

// TestSaveWhileThePluginFailed: settings that make the plugin fail must not
// lock the admin out. While the runtime says failed, a save is checked by
// the schema only (its problems still refuse it), stored, and starts the
// plugin again with the new settings; while it is starting or restarting,
// a save still fails with ErrPluginUnavailable and stores nothing.
func TestSaveWhileThePluginFailed(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{CrashLimit: 1, BackoffMin: 10 * time.Millisecond})
			e.install()
			ctx := context.Background()
			e.save(complete())
			e.save(with(complete(), "bucket", crashBucket))
			e.waitFailed(pluginID)
			changes := e.changes()

			fields, err := e.m.SaveSettings(ctx, pluginID, with(complete(), "bucket", "Bad_Bucket"))
			if err != nil || fieldMap(fields)["bucket"] == "" {
				t.Fatalf("a schema problem while the plugin failed: fields %v, error %v", fields, err)
			}
			if b := e.stored()["bucket"]; b != crashBucket {
				t.Fatalf("a save the schema refused stored bucket %v", b)
			}

			res, fields, err := e.m.Save(ctx, pluginID, complete())
			if err != nil || len(fields) > 0 {
				t.Fatalf("a save while the plugin failed: fields %v, error %v; want it stored", fields, err)
			}
			wantPrefix := "Settings saved after the schema's check only: the plugin could not check them (it has failed: crashed 1 times"
			if res.CheckedByPlugin || !strings.HasPrefix(res.Message, wantPrefix) || !strings.HasSuffix(res.Message, "It was started again and runs with them.") {
				t.Fatalf("save result %+v, want unchecked, starting %q and saying the plugin runs", res, wantPrefix)
			}
			if b := e.stored()["bucket"]; b != "results-bucket" {
				t.Fatalf("stored bucket %v, want results-bucket", b)
			}
			if st, _ := e.rt.Status(pluginID); st.State != pluginrt.StateRunning {
				t.Fatalf("after the save the plugin is %+v, want it started again", st)
			}
			if sv, err := e.m.Settings(ctx, pluginID); err != nil || sv.Problem != "" {
				t.Fatalf("the restarted plugin did not take the new settings: problem %q, %v", sv.Problem, err)
			}
			if e.changes() != changes+1 {
				t.Fatalf("SettingsChanged called %d times, want %d", e.changes(), changes+1)
			}
			if res, _, err := e.m.Save(ctx, pluginID, complete()); err != nil || !res.CheckedByPlugin || res.Message != "" {
				t.Fatalf("a save with the plugin running again: %+v, %v", res, err)
			}

			// Settings that crash it again: the same way out, and a
			// connection test says the plugin could not check them.
			e.save(with(complete(), "bucket", crashBucket))
			e.waitFailed(pluginID)
			rep, fields, err := e.m.Test(ctx, pluginID, with(complete(), "bucket", deniedBucket))
			if err != nil || len(fields) > 0 || rep.Save.CheckedByPlugin || !strings.HasPrefix(rep.Message, wantPrefix) ||
				!strings.HasSuffix(rep.Message, "It was started again and runs with them. The connection test failed at upload: "+strings.TrimPrefix(deniedMessage, "Connection failed: ")) {
				t.Fatalf("test while the plugin failed: %+v, fields %v, error %v", rep, fields, err)
			}

			// A binary that is gone: the settings are stored all the
			// same, and the answer says the plugin did not start.
			e.save(with(complete(), "bucket", crashBucket))
			e.waitFailed(pluginID)
			inst, _ := e.m.Installed(pluginID)
			if err := os.Remove(inst.BinaryPath); err != nil {
				t.Fatal(err)
			}
			res, fields, err = e.m.Save(ctx, pluginID, complete())
			if err != nil || len(fields) > 0 || res.CheckedByPlugin || !strings.Contains(res.Message, "It was started again with them but did not start: ") {
				t.Fatalf("save with the binary gone: %+v, fields %v, error %v", res, fields, err)
			}
			if strings.Contains(res.Message, "fake-secret-1") {
				t.Fatalf("the answer quotes the secret: %s", res.Message)
			}
			if b := e.stored()["bucket"]; b != "results-bucket" {
				t.Fatalf("stored bucket %v, want results-bucket", b)
			}
			st := e.waitFailed(pluginID)
			if res, _, err := e.m.Save(ctx, pluginID, complete()); err != nil || res.CheckedByPlugin {
				t.Fatalf("a save with the binary still gone (plugin %+v): %+v, %v", st, res, err)
			}
		})
	}
}

// TestSaveWhileThePluginRestartsIsRefused: a plugin that is restarting
// comes back by itself: a save waits for it (503 in the API).
func TestSaveWhileThePluginRestartsIsRefused(t *testing.T) {
	e := newEnv(t, testdb.Dialects()[0], pluginrt.Options{BackoffMin: time.Minute})
	e.install()
	ctx := context.Background()
	e.save(complete())
	e.save(with(complete(), "bucket", crashBucket))
	deadline := time.Now().Add(15 * time.Second)
	for {
		if st, _ := e.rt.Status(pluginID); st.State == pluginrt.StateRestarting {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the plugin did not restart after crashing")
		}
		time.Sleep(20 * time.Millisecond)
	}
	fields, err := e.m.SaveSettings(ctx, pluginID, complete())
	if !errors.Is(err, providers.ErrPluginUnavailable) || len(fields) > 0 || !strings.Contains(err.Error(), "restarting") {
		t.Fatalf("save while restarting: fields %v, error %v", fields, err)
	}
	if b := e.stored()["bucket"]; b != crashBucket {
		t.Fatalf("stored bucket %v while the plugin could not check it", b)
	}
}

// TestSaveThePluginRefusesWithoutFields: a plugin that refuses settings
// with InvalidSettings or InvalidArgument but names no field is a field
// problem on "settings" with its message, never ErrPluginUnavailable.
func TestSaveThePluginRefusesWithoutFields(t *testing.T) {
	for _, d := range testdb.Dialects() {
		t.Run(string(d), func(t *testing.T) {
			e := newEnv(t, d, pluginrt.Options{})
			e.install()
			ctx := context.Background()
			e.save(complete())
			for bucket, want := range map[string]string{
				noFieldsBucket: noFieldsMessage,
				badArgBucket:   "fake: bucket badarg-bucket is not a name this provider takes",
			} {
				fields, err := e.m.SaveSettings(ctx, pluginID, with(complete(), "bucket", bucket))
				if err != nil || !reflect.DeepEqual(fieldMap(fields), map[string]string{"settings": want}) {
					t.Errorf("%s: fields %v, error %v; want the plugin's message on settings", bucket, fields, err)
				}
			}
			if b := e.stored()["bucket"]; b != "results-bucket" {
				t.Fatalf("a refused save stored bucket %v", b)
			}
		})
	}
}
