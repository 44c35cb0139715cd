package app_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/app"
)

// TestNodeIDFile: the first start writes data/node.id (0600); later starts
// keep it; a file that holds no node id stops the start, naming the file
// and the fix.
func TestNodeIDFile(t *testing.T) {
	dir := t.TempDir()
	start := func() (*app.App, error) {
		return app.New(context.Background(), app.Config{DataDir: dir, AdminPasswordOut: io.Discard})
	}
	stop := func(a *app.App) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		if err := a.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	path := filepath.Join(dir, app.NodeIDFile)
	read := func() string {
		t.Helper()
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Fatalf("%s is %v, want 0600", path, st.Mode().Perm())
		}
		data, _ := os.ReadFile(path)
		return strings.TrimSpace(string(data))
	}
	a, err := start()
	if err != nil {
		t.Fatal(err)
	}
	stop(a)
	first := read()
	if len(first) != 32 {
		t.Fatalf("node id %q", first)
	}
	if a, err = start(); err != nil {
		t.Fatal(err)
	}
	stop(a)
	if again := read(); again != first {
		t.Fatalf("the node id changed on restart: %q, then %q", first, again)
	}
	if err := os.WriteFile(path, []byte("not an id"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err = start(); err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), "delete it") {
		t.Fatalf("start with a bad node id file: %v", err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), ".node.id") {
			t.Fatalf("a temp file was left: %s", e.Name())
		}
	}
}
