package results

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/magicads/r2storage/host/dbmigrate"
	"github.com/magicads/r2storage/host/localstore"
)

// otherNode is a second host node on e's database with a results folder
// of its own (shared=false) or e's (shared=true).
func otherNode(t *testing.T, e *env, opts Options, shared bool) (*Service, *localstore.Store) {
	t.Helper()
	local := e.local
	if !shared {
		var err error
		if local, err = localstore.New(t.TempDir()); err != nil {
			t.Fatal(err)
		}
	}
	return New(e.db.DB, local, e.router, opts), local
}

// nodeOptions are testOptions for node id.
func nodeOptions(id string) Options {
	o := testOptions()
	o.NodeID = id
	return o
}

// jobCounter counts the job attempts a node finished, per result kind of
// job ("offload", "delete", "restore").
type jobCounter struct {
	mu   sync.Mutex
	jobs map[string]int
}

func (c *jobCounter) JobFinished(kind, _, _ string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.jobs == nil {
		c.jobs = map[string]int{}
	}
	c.jobs[kind]++
}

func (c *jobCounter) Uploaded(string, int64, time.Duration, error) {}

func (c *jobCounter) count(kind string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.jobs[kind]
}

// inStore reports whether local holds the file of key.
func inStore(local *localstore.Store, key string) bool {
	_, err := os.Stat(filepath.Join(local.Root(), filepath.FromSlash(key)))
	return err == nil
}

// localNodeOf reads results.local_node of id.
func (e *env) localNodeOf(t *testing.T, id string) string {
	t.Helper()
	var n string
	if err := e.db.QueryRow("SELECT local_node FROM results WHERE id = $1", id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// TestNodesOffloadOnlyOnTheOwner: an offload job reads the local copy, so
// only the node holding it runs it; another node's workers pass it by
// (running their own jobs meanwhile) and the owner's run it.
func TestNodesOffloadOnlyOnTheOwner(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, false, nodeOptions("node-a"))
		optsB := nodeOptions("node-b")
		counted := &jobCounter{}
		optsB.Metrics = counted
		b, localB := otherNode(t, e, optsB, false)
		e.remote.setMode(func(string) mode { return failBefore })
		const n = 5
		var onA []Result
		for i := range n {
			res := e.finalize(t, payload(i))
			if res.Storage != Local || !e.localExists(res.Path) {
				t.Fatalf("setup: %+v", res)
			}
			if got := e.localNodeOf(t, res.ID); got != "node-a" {
				t.Fatalf("result finalized on node-a records local_node %q", got)
			}
			onA = append(onA, res)
		}
		// A result of node-b's own, queued after node-a's.
		own, err := b.Finalize(context.Background(), Upload{Kind: KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(payload(50)))
		if err != nil || own.Storage != Local || !inStore(localB, own.Path) {
			t.Fatalf("setup on node-b: %+v, %v", own, err)
		}
		before := counted.count(kindOffload)
		e.remote.resetCounts()
		e.remote.setMode(nil)
		worker(t, b)
		waitFor(t, "node-b to offload its own result", func() bool {
			return e.get(t, own.ID).Storage == remoteID && counted.count(kindOffload) > before
		})
		if got := counted.count(kindOffload) - before; got != 1 {
			t.Fatalf("node-b ran %d offload attempts, want 1 (its own result's)", got)
		}
		_, calls := e.remote.counts()
		for _, res := range onA {
			if calls[res.Path] != 0 {
				t.Fatalf("node-b tried to upload %s, whose local copy is on node-a (%d put calls)", res.Path, calls[res.Path])
			}
			if got := e.get(t, res.ID); got.Storage != Local || got.Upload == nil {
				t.Fatalf("node-a's result changed while only node-b worked: %+v", got)
			}
		}
		worker(t, e.svc)
		waitFor(t, "node-a to offload its results", func() bool { return e.pending(t) == 0 })
		ok, calls := e.remote.counts()
		for i, res := range onA {
			e.checkServed(t, res.ID, payload(i))
			if got := e.get(t, res.ID); got.Storage != remoteID {
				t.Fatalf("result %s still %s", res.ID, got.Storage)
			}
			if calls[res.Path] != 1 || ok[res.Path] != 1 {
				t.Fatalf("%s: %d put calls, want 1", res.Path, calls[res.Path])
			}
		}
	})
}

// TestNodesBulkOffloadRunsOnTheOwner: a bulk offload started through
// another node offloads each result through the node holding it.
func TestNodesBulkOffloadRunsOnTheOwner(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		const n = 12
		e, st, data := bulkEnv(t, d, nodeOptions("node-a"), n, false)
		e.router.setActive(nil)
		optsB := nodeOptions("node-b")
		counted := &jobCounter{}
		optsB.Metrics = counted
		b, localB := otherNode(t, e, optsB, false)
		own, err := b.Finalize(context.Background(), Upload{Kind: KindImages, Generator: "gemini", ContentType: "image/png"}, bytes.NewReader(payload(99)))
		if err != nil || own.Storage != Local || !inStore(localB, own.Path) {
			t.Fatalf("setup on node-b: %+v, %v", own, err)
		}
		e.router.setActive(&Target{ID: remoteID, Provider: st})
		before := counted.count(kindOffload)
		worker(t, b)
		run, err := b.StartBulk(context.Background(), BulkRequest{Direction: BulkOffload, Provider: remoteID})
		if err != nil {
			t.Fatal(err)
		}
		if run.Total.Results != n+1 {
			t.Fatalf("run covers %d results, want %d", run.Total.Results, n+1)
		}
		waitFor(t, "node-b to offload its own result", func() bool {
			return e.get(t, own.ID).Storage == remoteID && counted.count(kindOffload) > before
		})
		if got := counted.count(kindOffload) - before; got != 1 {
			t.Fatalf("node-b ran %d offload attempts, want 1 (its own result's)", got)
		}
		for id := range data {
			r := e.get(t, id)
			if r.Storage != Local || st.putCount(r.Path) != 0 {
				t.Fatalf("node-b offloaded %s (storage %s, %d puts), whose local copy is on node-a", id, r.Storage, st.putCount(r.Path))
			}
		}
		if r := e.bulkRun(t, run.ID); r.State != BulkRunning || r.Failed.Results != 0 {
			t.Fatalf("run while node-a is away: %+v", r)
		}
		worker(t, e.svc)
		waitFor(t, "the run done", func() bool { return e.bulkRun(t, run.ID).State == BulkDone })
		final := e.bulkRun(t, run.ID)
		if final.Done.Results != n+1 || final.Failed.Results != 0 {
			t.Fatalf("final progress %+v", final)
		}
		for id := range data {
			r := e.get(t, id)
			if r.Storage != remoteID || st.putCount(r.Path) != 1 {
				t.Fatalf("result %s: storage %s, %d puts", id, r.Storage, st.putCount(r.Path))
			}
		}
	})
}

// TestNodesDeleteThroughAnotherNode: deleting a local result through a
// node that does not hold its file removes the file on the node that
// does, and fails nothing.
func TestNodesDeleteThroughAnotherNode(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, nodeOptions("node-a"))
		b, _ := otherNode(t, e, nodeOptions("node-b"), false)
		res := e.finalize(t, payload(1))
		if err := b.Delete(context.Background(), res.ID); err != nil {
			t.Fatalf("Delete through node-b: %v", err)
		}
		if _, err := e.svc.Get(context.Background(), res.ID); err == nil {
			t.Fatal("the deleted result is still served")
		}
		worker(t, b)
		worker(t, e.svc)
		waitFor(t, "node-a to remove the file and the row", func() bool { return !e.localExists(res.Path) && e.rowCount(t) == 0 })
		if p := e.pending(t); p != 0 {
			t.Fatalf("%d jobs left", p)
		}
	})
}

// TestNodesContentNamesTheOwner: a local result read through another node
// names the node that holds it; the owner serves its file.
func TestNodesContentNamesTheOwner(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, nodeOptions("node-a"))
		b, _ := otherNode(t, e, nodeOptions("node-b"), false)
		res := e.finalize(t, payload(3))
		c, err := b.Content(context.Background(), res.ID)
		if err != nil || c.OwnerNode != "node-a" || c.LocalPath != "" || c.RedirectURL != "" {
			t.Fatalf("Content through node-b = %+v, %v; want OwnerNode node-a", c, err)
		}
		c, err = e.svc.Content(context.Background(), res.ID)
		if err != nil || c.OwnerNode != "" || c.LocalPath == "" {
			t.Fatalf("Content on node-a = %+v, %v", c, err)
		}
	})
}

// TestNodesSharedVolume: on a shared results folder no result belongs to
// a node, and any node runs any job.
func TestNodesSharedVolume(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		optsA, optsB := nodeOptions("node-a"), nodeOptions("node-b")
		optsA.SharedVolume, optsB.SharedVolume = true, true
		e := newEnv(t, d, true, false, optsA)
		b, _ := otherNode(t, e, optsB, true)
		e.remote.setMode(func(string) mode { return failBefore })
		const n = 4
		var ids []string
		for i := range n {
			res := e.finalize(t, payload(i))
			if got := e.localNodeOf(t, res.ID); got != "" {
				t.Fatalf("on a shared volume local_node is %q, want empty", got)
			}
			ids = append(ids, res.ID)
		}
		c, err := b.Content(context.Background(), ids[0])
		if err != nil || c.OwnerNode != "" || c.LocalPath == "" {
			t.Fatalf("Content through node-b on a shared volume = %+v, %v", c, err)
		}
		e.remote.setMode(nil)
		worker(t, b)
		waitFor(t, "node-b to offload node-a's results", func() bool { return e.pending(t) == 0 })
		for i, id := range ids {
			if got := e.checkServed(t, id, payload(i)); got.Storage != remoteID {
				t.Fatalf("result %s: %s", id, got.Storage)
			}
		}
	})
}

// TestNodesBringBackOnAnyNode: bringing back a result without a local
// copy runs on any node, and the node that downloads it holds it.
func TestNodesBringBackOnAnyNode(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, true, nodeOptions("node-a"))
		b, localB := otherNode(t, e, nodeOptions("node-b"), false)
		res := e.finalize(t, payload(7))
		if res.Storage != remoteID || res.LocalPresent || e.localExists(res.Path) {
			t.Fatalf("setup: %+v", res)
		}
		worker(t, b)
		run, err := b.StartBulk(context.Background(), BulkRequest{Direction: BulkLocal, Provider: remoteID})
		if err != nil {
			t.Fatal(err)
		}
		waitFor(t, "the bring-back done", func() bool { return e.bulkRun(t, run.ID).State == BulkDone })
		if got := e.get(t, res.ID); got.Storage != Local || !got.LocalPresent {
			t.Fatalf("after the bring-back: %+v", got)
		}
		if got := e.localNodeOf(t, res.ID); got != "node-b" || !inStore(localB, res.Path) || e.localExists(res.Path) {
			t.Fatalf("local_node %q, on node-b %v, on node-a %v; want the copy on node-b only", got, inStore(localB, res.Path), e.localExists(res.Path))
		}
		c, err := e.svc.Content(context.Background(), res.ID)
		if err != nil || c.OwnerNode != "node-b" {
			t.Fatalf("Content on node-a = %+v, %v; want OwnerNode node-b", c, err)
		}
	})
}

// TestNodesDeleteOffloadedWithACopyThroughAnotherNode: deleting, through
// another node, an offloaded result whose local copy was kept removes the
// object and, on the node holding it, the copy.
func TestNodesDeleteOffloadedWithACopyThroughAnotherNode(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, true, false, nodeOptions("node-a"))
		b, _ := otherNode(t, e, nodeOptions("node-b"), false)
		res := e.finalize(t, payload(2))
		if res.Storage != remoteID || !res.LocalPresent || !e.localExists(res.Path) || !e.remote.has(res.Path) {
			t.Fatalf("setup: %+v", res)
		}
		if err := b.Delete(context.Background(), res.ID); err != nil {
			t.Fatalf("Delete through node-b: %v", err)
		}
		worker(t, b)
		worker(t, e.svc)
		waitFor(t, "the object, the copy on node-a and the row gone", func() bool {
			return !e.remote.has(res.Path) && !e.localExists(res.Path) && e.rowCount(t) == 0
		})
		if p := e.pending(t); p != 0 {
			t.Fatalf("%d jobs left", p)
		}
	})
}

// TestNodesRecoveryAdoptsForItsNode: a local result's file that startup
// recovery adopts (its row said it had none) is recorded on the node
// whose results folder holds it.
func TestNodesRecoveryAdoptsForItsNode(t *testing.T) {
	forDialects(t, func(t *testing.T, d dbmigrate.Dialect) {
		e := newEnv(t, d, false, false, nodeOptions("node-a"))
		res := e.finalize(t, payload(4))
		if _, err := e.db.Exec("UPDATE results SET local_present = $1, local_node = '' WHERE id = $2", false, res.ID); err != nil {
			t.Fatal(err)
		}
		rep, err := e.svc.Recover(context.Background(), time.Now().Add(time.Hour))
		if err != nil || rep.Adopted.Files != 1 {
			t.Fatalf("Recover = %+v, %v; want one file adopted", rep, err)
		}
		if got := e.localNodeOf(t, res.ID); got != "node-a" {
			t.Fatalf("adopted file recorded on node %q, want node-a", got)
		}
	})
}
