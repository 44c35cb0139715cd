// Package results finalizes studio results, offloads them to the active
// storage provider and serves, lists and deletes them.
//
// A finalized result is first written to the local results disk and recorded
// with storage 'local'. When Default Storage is a provider that takes
// results now, the result is then uploaded inline, for at most
// Options.InlineOffloadTimeout (5 s by default), and on success recorded as
// living there. An upload that fails or runs out of that time leaves the
// result local and served from disk, and its offload job goes to the queue
// (at once after a time-out): finalizing never fails, and never waits on
// the network longer than that bound, because of a provider. While the
// Default Storage provider is momentarily unusable (its settings cannot be
// read, the plugin is restarting or being updated), results are recorded
// local and queued for it; only the admin changing Default Storage drops
// such a job.
//
// The storage column of the results table is the one place a result is
// served from, and it names a provider only after that provider's Put
// succeeded. Jobs (offloads and deletes still to do) live in the jobs table;
// a node leases a job before working on it, so several host nodes sharing one
// PostgreSQL database never run one job at the same time. Each node runs
// Options.Workers workers, each job under a deadline.
package results

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/magicads/r2storage/host/localstore"
	"github.com/magicads/r2storage/host/media"
	"github.com/magicads/r2storage/shared/storage"
)

// Local is the storage value of a result kept on the local results disk.
const Local = localstore.ID

// Kinds of results.
const (
	// KindImages is an Image Studio result.
	KindImages = "images"
	// KindVideos is a Video Studio result.
	KindVideos = "videos"
)

// ErrNotFound means the result does not exist or was deleted.
var ErrNotFound = errors.New("result not found")

// ErrInvalid means a caller's argument was refused (kind, generator,
// content type, cursor); the wrapped message names the cause.
var ErrInvalid = errors.New("invalid input")

// ErrUnsupportedMedia means the content is not an accepted studio image or
// video; the wrapped message names what it is.
var ErrUnsupportedMedia = errors.New("unsupported media")

// ErrUnavailable means a result exists but cannot be served right now; the
// wrapped message names the cause.
var ErrUnavailable = errors.New("result content unavailable")

// Target is the remote provider new results are offloaded to.
type Target struct {
	// ID is the provider id recorded in the storage column.
	ID string
	// Provider is the provider itself.
	Provider storage.Provider
	// DeleteLocal removes the local file once the remote copy is confirmed.
	DeleteLocal bool
}

// RouteState is what Default Storage means for a new result right now.
type RouteState int

// The route states.
const (
	// RouteLocal: Default Storage is local; results stay local and nothing
	// is queued.
	RouteLocal RouteState = iota
	// RouteReady: Default Storage is a provider that takes results now;
	// they are uploaded inline, then queued if that fails.
	RouteReady
	// RouteWaiting: Default Storage is a provider that cannot take results
	// right now for a passing reason (its settings or the Default Storage
	// entry cannot be read, the plugin is starting, restarting or being
	// updated, it is not configured yet); results are recorded local and
	// queued for it.
	RouteWaiting
	// RouteOff: Default Storage is a provider that takes no new results
	// (disabled, stopped by the crash-loop breaker, or its install record
	// refused): new results stay local and queue nothing; jobs already
	// queued for it wait until it is back or Default Storage changes.
	RouteOff
)

// Route is where Default Storage sends new results, as the Router sees it.
type Route struct {
	// State says what to do with a new result.
	State RouteState
	// Default is what Default Storage names: Local or a provider id. With
	// Guess set it is the last value read, "" if none ever was.
	Default string
	// Guess is set when the Default Storage entry cannot be read right now:
	// Default is then the last value read, and queued jobs are never dropped
	// on its word.
	Guess bool
	// Target is the provider to upload to; Target.Provider is set with
	// RouteReady.
	Target Target
	// Reason says why the provider cannot take results (RouteWaiting,
	// RouteOff).
	Reason string
}

// Router tells the service where new results go and how to reach providers.
type Router interface {
	// Route says where Default Storage sends new results right now; the
	// queue also asks it before each offload attempt.
	Route(ctx context.Context) Route
	// Provider returns a provider by id (for retries and deletes) even if it
	// is no longer the default; ok=false if it is not installed.
	Provider(ctx context.Context, id string) (storage.Provider, bool)
	// Placement returns where provider id puts new objects now and what
	// it accepts, from its last successful Configure (and Describe) on
	// this node; ok=false when it is not installed or was never
	// configured here.
	Placement(ctx context.Context, id string) (Placement, bool)
}

// Result is a finalized studio result.
type Result struct {
	// ID is a random UUID; the file name in Path is the same UUID.
	ID string `json:"id"`
	// Path is the relative path on the results disk and the object key:
	// <kind>/<generator>/<uuid>.<ext>.
	Path string `json:"path"`
	// Storage is "local" or the id of the provider the result lives in.
	Storage string `json:"storage"`
	// URL is the public URL an offloaded result is served from; "" for
	// local results. While its bucket is the one its provider is
	// configured for and the provider has a public base URL, it is built
	// from that base (so moving the public URL moves older results too);
	// otherwise it is the URL recorded at upload.
	URL string `json:"url"`
	// ObjectKey is the offloaded object's full key in its bucket (the
	// provider's key prefix included); "" while the result is local. For a
	// legacy result (Bucket "") it is the key given to the provider, which
	// adds its current prefix.
	ObjectKey string `json:"object_key"`
	// Bucket is the identity of the bucket the object is in, as its
	// provider reported it (e.g. "r2:<account>/<bucket>"); "" while local
	// and for results uploaded before providers reported it.
	Bucket string `json:"bucket"`
	// Upload is the result's offload job: why it is not in its provider
	// yet. nil (omitted) when the result has no offload job.
	Upload *UploadStatus `json:"upload,omitempty"`
	// ContentType is the media type the result was finalized with.
	ContentType string `json:"content_type"`
	// SHA256 is the hex SHA-256 of the content.
	SHA256 string `json:"sha256"`
	// Size is the content's size in bytes.
	Size int64 `json:"size"`
	// LocalPresent is true while a local copy exists.
	LocalPresent bool `json:"local_present"`
	// CreatedAt is when the result was finalized (UTC, microseconds).
	CreatedAt time.Time `json:"created_at"`
	// Owner is the platform user the result belongs to; "" for none.
	Owner string `json:"owner"`
	// LocalReason says why a result whose Default Storage is a provider is
	// still local: queued for it, and why it is not there yet; or kept
	// local for good (Default Storage changed before it got there, the
	// provider takes no new results). "" for a result that is where Default
	// Storage sent it.
	LocalReason string `json:"local_reason"`
}

// The states of a result's offload job (UploadStatus.State).
const (
	// UploadQueued: waiting for its first attempt.
	UploadQueued = "queued"
	// UploadRetrying: an attempt failed for a passing reason; it is tried
	// again at NextAttemptAt.
	UploadRetrying = "retrying"
	// UploadFailed: an attempt failed for a reason retrying cannot fix
	// (credentials refused, a bad request): it runs again when the
	// provider's settings change or an admin retries it.
	UploadFailed = "failed"
)

// UploadStatus is a result's pending offload, as the API shows it.
type UploadStatus struct {
	// State is UploadQueued, UploadRetrying or UploadFailed.
	State string `json:"state"`
	// Provider is the provider it goes to; "" for whatever Default Storage
	// names when it runs.
	Provider string `json:"provider"`
	// Error is the last attempt's error, or why the job was queued.
	Error string `json:"error"`
	// Attempts counts the attempts made.
	Attempts int `json:"attempts"`
	// NextAttemptAt is when it is tried next (zero, omitted, when failed).
	NextAttemptAt time.Time `json:"next_attempt_at,omitzero"`
}

// Upload describes a new result for Finalize.
type Upload struct {
	// Kind is KindImages or KindVideos.
	Kind string
	// Generator is the model that made it (lowercase letters, digits, hyphens).
	Generator string
	// Owner is the platform user it belongs to; "" for none. Finalize
	// records it; Stage ignores it (Commit takes the owner).
	Owner string
	// ContentType is the declared media type; "" or application/octet-stream
	// lets the content decide. The content always decides what is stored.
	ContentType string
}

// ListOptions select a page of results.
type ListOptions struct {
	// Cursor is "" for the first page, else a next cursor List returned.
	Cursor string
	// Limit is the page size (default 50, at most 500).
	Limit int
	// Owner keeps only that owner's results when not "".
	Owner string
}

// Content says how to serve a result's bytes: from LocalPath, by
// redirecting to RedirectURL, or through the node OwnerNode. Exactly one
// of the three is set.
type Content struct {
	// LocalPath is the absolute path of the local file to serve.
	LocalPath string
	// RedirectURL is the public URL of the offloaded object.
	RedirectURL string
	// OwnerNode, when set, is the host node whose results folder holds
	// the local copy this node cannot read (LocalPath and RedirectURL are
	// then ""): the content is served through that node.
	OwnerNode string
	Result
}

// Options tune a Service. Zero values take the defaults.
type Options struct {
	// InlineOffloadTimeout bounds how long Finalize (and Commit) waits for
	// the inline upload (default 5s). An upload still running then is cut,
	// the result is answered local, and the queue takes the job at once.
	InlineOffloadTimeout time.Duration
	// JobTimeout is the deadline of one queued job (default 30m): a
	// provider call still running then is cut and the job retried later.
	JobTimeout time.Duration
	// DeleteTimeout bounds the inline delete attempt in Delete (default 5s);
	// a delete still running then is cut and queued at once.
	DeleteTimeout time.Duration
	// DBTimeout bounds each database step of a request: Commit's records and
	// its read-back, and (through DBTimeout()) the API's calls (default 5s).
	DBTimeout time.Duration
	// Workers is how many workers a RunWorker call runs (default 4, at
	// most 64). A worker runs one job at a time, or up to four uploads of
	// a bulk run's results of at most 1 MiB.
	Workers int
	// NodeID names this host node in job leases; RunWorker releases at once
	// the leases an earlier process of the same node left (a crash). It must
	// be stable across restarts and unique per node (the host keeps it in
	// its data dir). Default: a random id, so nothing is released.
	NodeID string
	// SharedVolume says every node mounts the same results folder (e.g. an
	// NFS share): local copies then belong to no node (results.local_node
	// is written ''), and this node runs any job and serves any local
	// copy. Without it each node's results folder is its own, and the work
	// that reads a local copy runs only on the node that holds it.
	SharedVolume bool
	// PollInterval is how often an idle worker looks for due jobs (default 5s).
	PollInterval time.Duration
	// LeaseDuration is how long a job lease lasts before it must be renewed;
	// a node renews its lease every third of it while working (default 1m).
	LeaseDuration time.Duration
	// BackoffMin and BackoffMax bound the retry delay (default 10s and 30m).
	BackoffMin, BackoffMax time.Duration
	// Logger receives the service's logs (default slog.Default()).
	Logger *slog.Logger
	// Now is the clock (default time.Now).
	Now func() time.Time
	// Metrics records job outcomes and uploads (default: nothing).
	Metrics Metrics
}

// Metrics records what the service does, for monitoring (host/metrics).
type Metrics interface {
	// JobFinished counts an attempt of a job of kind ("offload" or
	// "delete") to provider ("" when Default Storage was not resolved)
	// that ended with outcome: "ok", "retry", "failed" or "dropped".
	JobFinished(kind, provider, outcome string)
	// Uploaded records an upload of size bytes to provider that took d
	// and ended with err.
	Uploaded(provider string, size int64, d time.Duration, err error)
}

// noMetrics records nothing.
type noMetrics struct{}

func (noMetrics) JobFinished(string, string, string)           {}
func (noMetrics) Uploaded(string, int64, time.Duration, error) {}

// withDefaults fills the zero fields of o.
func (o Options) withDefaults() Options {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.InlineOffloadTimeout, 5*time.Second)
	def(&o.JobTimeout, 30*time.Minute)
	def(&o.DeleteTimeout, 5*time.Second)
	def(&o.DBTimeout, 5*time.Second)
	if o.Workers <= 0 {
		o.Workers = DefaultWorkers
	}
	o.Workers = min(o.Workers, MaxWorkers)
	if o.NodeID == "" {
		o.NodeID = rand.Text()
	}
	// A node id prefixes lease claims, "<node>/<process>/<claim>": it holds
	// no "/" (node "a" must not match node "a/b"'s leases) and only ASCII.
	o.NodeID = strings.Map(func(r rune) rune {
		if r < 0x80 && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_' || r == '.') {
			return r
		}
		return '-'
	}, o.NodeID)
	def(&o.PollInterval, 5*time.Second)
	def(&o.LeaseDuration, time.Minute)
	def(&o.BackoffMin, 10*time.Second)
	def(&o.BackoffMax, 30*time.Minute)
	if o.BackoffMax < o.BackoffMin {
		o.BackoffMax = o.BackoffMin
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Metrics == nil {
		o.Metrics = noMetrics{}
	}
	return o
}

// Service finalizes, serves, deletes and offloads results. It is safe for
// concurrent use.
type Service struct {
	db     *stmtDB
	local  *localstore.Store
	router Router
	opts   Options
	log    *slog.Logger
	// owner prefixes what this Service writes into the leases it takes:
	// "<node id>/<random per Service>/<random per claim>".
	owner string
	// wake nudges idle workers after a job was queued.
	wake chan struct{}
	// cands are the due jobs listed for this Service's workers to claim.
	cands candidates
	// bulkWake nudges the bulk feeder (runBulk) after a bulk job ended or
	// a bulk operation changed.
	bulkWake chan struct{}
	// flights tracks provider calls in flight, for Drain.
	flights flights
	// staged holds the ids between Stage and the end of Commit or
	// Discard, which startup recovery never removes.
	stagedMu sync.Mutex
	staged   map[string]struct{}
	// seen holds, per provider, the latest outcomes of this node's
	// attempts (JobStats).
	seenMu sync.Mutex
	seen   map[string]*seenStats
	// passMu runs one custody pass (Configured) at a time; passed holds,
	// per provider, the placement of its last complete pass.
	passMu sync.Mutex
	passed map[string]Placement
	// recorder records finished uploads in groups.
	recorder recorder
}

// stage marks id as staged (on=true) or no longer (on=false).
func (s *Service) stage(id string, on bool) {
	s.stagedMu.Lock()
	defer s.stagedMu.Unlock()
	if on {
		s.staged[id] = struct{}{}
	} else {
		delete(s.staged, id)
	}
}

// isStaged reports whether id is between Stage and the end of Commit or
// Discard in this process.
func (s *Service) isStaged(id string) bool {
	s.stagedMu.Lock()
	defer s.stagedMu.Unlock()
	_, ok := s.staged[id]
	return ok
}

const (
	// DefaultWorkers is Options.Workers when it is not set.
	DefaultWorkers = 4
	// MaxWorkers caps Options.Workers.
	MaxWorkers = 64
)

// New returns a Service over a migrated host database and the local results
// store (both required). A nil router keeps every result local.
func New(db *sql.DB, local *localstore.Store, router Router, opts Options) *Service {
	opts = opts.withDefaults()
	if router == nil {
		router = localOnly{}
	}
	s := &Service{db: newStmtDB(db), local: local, router: router, opts: opts, log: opts.Logger,
		owner: opts.NodeID + "/" + rand.Text(), wake: make(chan struct{}, 1), bulkWake: make(chan struct{}, 1), staged: map[string]struct{}{}, seen: map[string]*seenStats{}, passed: map[string]Placement{}}
	s.recorder.write, s.recorder.timeout = s.writeOffloads, bookkeepingTimeout
	return s
}

// localNode is the node results.local_node records for a local copy this
// node writes: this node, or "" (any node) on a shared results folder.
func (s *Service) localNode() string {
	if s.opts.SharedVolume {
		return ""
	}
	return s.opts.NodeID
}

// holds reports whether this node reads the local copies recorded on node
// (results.local_node): its own, those of no node, and on a shared
// results folder every one.
func (s *Service) holds(node string) bool {
	return s.opts.SharedVolume || node == "" || node == s.opts.NodeID
}

// newClaim returns a fresh lease claim, written to locked_by:
// "<node id>/<process>/<claim>".
func (s *Service) newClaim() string { return s.owner + "/" + rand.Text()[:10] }

// localOnly is the Router of a host without remote storage.
type localOnly struct{}

// Route reports Default Storage local.
func (localOnly) Route(context.Context) Route { return Route{State: RouteLocal, Default: Local} }

// Provider reports no provider.
func (localOnly) Provider(context.Context, string) (storage.Provider, bool) { return nil, false }

// Placement reports no provider.
func (localOnly) Placement(context.Context, string) (Placement, bool) { return Placement{}, false }

// now returns the clock's time as the database keeps it.
func (s *Service) now() time.Time { return micro(s.opts.Now()) }

// generatorPattern is what a generator id may look like.
var generatorPattern = regexp.MustCompile(`^[a-z0-9]+(-[a-z0-9]+)*$`)

// maxGenerator is the longest generator id accepted.
const maxGenerator = 64

// maxOwner is the longest owner accepted, in bytes.
const maxOwner = 255

// checkOwner refuses owners that are too long or hold control characters.
func checkOwner(owner string) error {
	hidden := func(r rune) bool { return unicode.IsControl(r) || unicode.Is(unicode.Cf, r) }
	if len(owner) > maxOwner || !utf8.ValidString(owner) || strings.IndexFunc(owner, hidden) >= 0 {
		return fmt.Errorf("%w: owner must be at most %d bytes of UTF-8 text without control or format characters", ErrInvalid, maxOwner)
	}
	return nil
}

// checkInput validates kind and generator (Commit checks the owner).
func checkInput(u Upload) error {
	if u.Kind != KindImages && u.Kind != KindVideos {
		return fmt.Errorf("%w: kind %q is not %q or %q", ErrInvalid, u.Kind, KindImages, KindVideos)
	}
	if len(u.Generator) > maxGenerator || !generatorPattern.MatchString(u.Generator) {
		return fmt.Errorf("%w: generator %q must be 1 to %d lowercase letters, digits and single hyphens", ErrInvalid, u.Generator, maxGenerator)
	}
	return nil
}

// sniff reads the content's leading bytes and returns its media type: an
// accepted one that fits the kind and agrees with the declared type.
func sniff(br *bufio.Reader, u Upload) (string, error) {
	head, err := br.Peek(media.SniffLen)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, bufio.ErrBufferFull) {
		return "", fmt.Errorf("results: reading the content: %w", err)
	}
	got, ok := media.Sniff(head)
	declared := media.Normalize(u.ContentType)
	if declared == "" && strings.TrimSpace(u.ContentType) != "" {
		return "", fmt.Errorf("%w: the declared content type %q is not a media type; send the file's type (or none) and one of %s", ErrUnsupportedMedia, u.ContentType, media.Types)
	}
	if !ok {
		sent := "the file is " + got
		if declared != "" && declared != got {
			sent += " (declared " + declared + ")"
		}
		return "", fmt.Errorf("%w: %s; results must be one of %s", ErrUnsupportedMedia, sent, media.Types)
	}
	if declared != "" && declared != "application/octet-stream" && declared != got {
		return "", fmt.Errorf("%w: the file was declared %s but its content is %s; send it as %s", ErrUnsupportedMedia, declared, got, got)
	}
	if family := strings.TrimSuffix(u.Kind, "s") + "/"; !strings.HasPrefix(got, family) {
		return "", fmt.Errorf("%w: kind %q does not fit the content, %s", ErrInvalid, u.Kind, got)
	}
	return got, nil
}

// newUUID returns a random (version 4) UUID.
func newUUID() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("results: random id: %w", err)
	}
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	h := hex.EncodeToString(b[:])
	return h[0:8] + "-" + h[8:12] + "-" + h[12:16] + "-" + h[16:20] + "-" + h[20:], nil
}

// Finalize stores a new result read from r: on the local disk first, then,
// when a remote provider is active, offloaded inline. It fails only on bad
// input or when the local write or its record fails; a storage provider's
// failure leaves the result local and queues a retry.
func (s *Service) Finalize(ctx context.Context, u Upload, r io.Reader) (Result, error) {
	st, err := s.Stage(ctx, u, r)
	if err != nil {
		return Result{}, err
	}
	return st.Commit(ctx, u.Owner)
}

// dropUnrecorded removes the local file of a result whose record failed,
// unless the row exists after all (a COMMIT that applied although its
// answer was lost): then the file is the result's and stays. When that
// cannot be told now, the file stays too; it is never removed under a row.
func (s *Service) dropUnrecorded(ctx context.Context, id, key string) {
	// A short look: the request already waited DBTimeout for the record,
	// and a database that does not answer keeps the file (startup recovery
	// removes it if the row never committed).
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(s.opts.DBTimeout, time.Second))
	defer cancel()
	var n int
	if err := s.db.QueryRowContext(cctx, "SELECT COUNT(*) FROM results WHERE id = $1", id).Scan(&n); err != nil || n > 0 {
		if err != nil {
			s.log.Warn("results: cannot tell whether a failed record applied; keeping its local file", "path", key, "err", err)
		}
		return
	}
	if err := s.local.Delete(context.WithoutCancel(ctx), key); err != nil {
		s.log.Error("results: removing the local file of an unrecorded result", "path", key, "err", err)
	}
}

// Staged is a result whose content is on the local disk but not recorded
// yet: Commit records it, Discard removes it.
type Staged struct {
	s    *Service
	id   string
	key  string
	ct   string
	size int64
	sum  []byte
	done bool
}

// Stage checks the upload and writes its content to the local results disk
// without recording it, so a caller can still read the rest of a request
// (e.g. a form's trailing fields) before the result exists. The content's
// leading bytes must be an accepted studio image or video
// (ErrUnsupportedMedia otherwise).
func (s *Service) Stage(ctx context.Context, u Upload, r io.Reader) (*Staged, error) {
	if r == nil {
		return nil, fmt.Errorf("%w: no content", ErrInvalid)
	}
	if err := checkInput(u); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(r, media.SniffLen)
	ct, err := sniff(br, u)
	if err != nil {
		return nil, err
	}
	id, err := newUUID()
	if err != nil {
		return nil, err
	}
	key := u.Kind + "/" + u.Generator + "/" + id + "." + media.Ext(ct)
	s.stage(id, true)
	info, sum, err := s.local.Write(ctx, key, br, storage.PutOptions{ContentType: ct, Size: -1})
	if err != nil {
		s.stage(id, false)
		return nil, fmt.Errorf("results: writing %s to the local disk: %w", key, err)
	}
	return &Staged{s: s, id: id, key: key, ct: ct, size: info.Size, sum: sum}, nil
}

// Discard removes a staged result's local file; it does nothing after Commit.
func (st *Staged) Discard() {
	if st == nil || st.done {
		return
	}
	st.done = true
	defer st.s.stage(st.id, false)
	if err := st.s.local.Delete(context.Background(), st.key); err != nil {
		st.s.log.Error("results: removing the local file of a discarded upload", "path", st.key, "err", err)
	}
}

// Commit records the staged result as owner's ("" for none) and, when
// Default Storage is a provider that takes results now, offloads it inline
// for at most Options.InlineOffloadTimeout. The Result says where the
// result is when Commit returns.
func (st *Staged) Commit(ctx context.Context, owner string) (Result, error) {
	if st.done {
		return Result{}, fmt.Errorf("results: %s was already committed or discarded", st.key)
	}
	if err := checkOwner(owner); err != nil {
		st.Discard()
		return Result{}, err
	}
	st.done = true
	s, id, key := st.s, st.id, st.key
	defer s.stage(id, false)
	now := s.now()
	rw := row{id: id, path: key, contentType: st.ct, sha256: hex.EncodeToString(st.sum), storage: Local,
		size: st.size, localPresent: true, createdAt: now, owner: owner}
	// A database that does not answer fails the records within DBTimeout.
	dctx, dcancel := context.WithTimeout(ctx, s.opts.DBTimeout)
	route := s.router.Route(dctx)
	if route.State == RouteReady && (route.Target.Provider == nil || route.Target.ID == "" || route.Target.ID == Local || route.Target.ID != route.Default) {
		s.log.Error("results: the router's target is unusable; queueing the result for the Default Storage", "provider", route.Target.ID, "default", route.Default)
		route.State, route.Reason = RouteWaiting, "the router gave no usable provider"
	}
	plan := planLocal
	switch {
	case route.State == RouteReady:
		plan = planInline
	case route.State == RouteWaiting && route.Default != Local:
		plan = planQueue
		to := route.Default
		if to == "" {
			to = "the Default Storage"
		}
		rw.localReason = short(fmt.Errorf("queued for %s, which cannot take results right now: %s", to, route.Reason))
	case route.State == RouteOff && route.Default != Local:
		rw.localReason = short(fmt.Errorf("kept local: the Default Storage %s takes no new results: %s", route.Default, route.Reason))
	}
	if plan != planLocal && route.Default != "" {
		if pl, ok := s.router.Placement(dctx, route.Default); ok {
			if why := tooBig(route.Default, pl, st.size); why != "" {
				plan, rw.localReason = planLocal, "kept local: "+why
			}
		}
	}
	j, err := s.record(dctx, rw, route, plan, now)
	dcancel()
	if err != nil {
		s.dropUnrecorded(ctx, id, key)
		return Result{}, fmt.Errorf("results: recording %s: %w", key, err)
	}
	switch plan {
	case planLocal:
		return rw.result(), nil
	case planQueue:
		s.log.Info("results: the Default Storage provider cannot take results right now; the result is local and queued for it",
			"result", id, "provider", route.Default, "reason", route.Reason)
		s.nudge()
		return s.readBack(ctx, rw), nil
	}
	// From here on the result exists and is served locally: storage
	// problems are logged and retried, never returned.
	octx, cancel := context.WithTimeout(ctx, s.opts.InlineOffloadTimeout)
	defer cancel()
	target := route.Target
	out := s.runFlight(octx, j, target.ID, func(jctx context.Context) outcome {
		o := s.offloadJob(jctx, j, &target)
		if o.state == stateRetry && octx.Err() != nil {
			// Cut by the inline bound (or the caller leaving): the queue
			// takes over now.
			o.handoff = true
		}
		return o
	})
	switch {
	case out.handoff:
		s.log.Info("results: the inline upload did not finish in time; the result is local and the queue continues it",
			"result", id, "path", key, "provider", target.ID, "bound", s.opts.InlineOffloadTimeout)
	case out.state == stateFail:
		// finish logged it.
	case out.err != nil:
		s.log.Warn("results: offload failed; the result stays local and will be retried",
			"result", id, "path", key, "provider", target.ID, "err", short(out.err))
	}
	return s.readBack(ctx, rw), nil
}

// readBack reads a just-recorded result as it is now, with the URL it is
// served from; rw (what was recorded) when the read fails.
func (s *Service) readBack(ctx context.Context, rw row) Result {
	lctx, lcancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DBTimeout)
	defer lcancel()
	final, err := loadRow(lctx, s.db, rw.id)
	if err != nil {
		// The result was recorded; report what we know.
		s.log.Error("results: reading back a finalized result", "result", rw.id, "err", err)
		return rw.result()
	}
	return s.presentOne(lctx, final)
}

// What Commit does with a new result.
const (
	// planLocal records it local, with no job.
	planLocal = iota
	// planInline records it with an offload job leased by the caller, who
	// uploads it inline.
	planInline
	// planQueue records it with an offload job for the queue.
	planQueue
)

// record inserts the result row and, as plan says, an offload job (leased
// by this call, or queued), in one transaction.
func (s *Service) record(ctx context.Context, rw row, route Route, plan int, now time.Time) (*job, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer rollback(tx)
	if _, err := tx.ExecContext(ctx, `INSERT INTO results (id, path, content_type, size, sha256, storage, object_key, url, local_present, deleted, created_at, updated_at, owner, local_reason, local_node)
		VALUES ($1, $2, $3, $4, $5, $6, '', '', $7, $8, $9, $9, $10, $11, $12)`,
		rw.id, rw.path, rw.contentType, rw.size, rw.sha256, Local, true, false, dbTime(now), rw.owner, rw.localReason, s.localNode()); err != nil {
		return nil, err
	}
	var j *job
	switch plan {
	case planInline:
		if j, err = s.insertLeasedJob(ctx, tx, kindOffload, rw.id, route.Target.ID, rw.path, "", s.localNode(), now); err != nil {
			return nil, err
		}
	case planQueue:
		// The first attempt waits a backoff step: the reason is passing,
		// and trying at once would only fail again.
		due := now.Add(s.backoff(1))
		if err := s.insertQueuedJob(ctx, tx, kindOffload, rw.id, route.Default, rw.path, "", s.localNode(), now, due, route.Reason); err != nil {
			return nil, err
		}
	}
	return j, tx.Commit()
}

// Get returns the result id; ErrNotFound when it is missing or deleted.
func (s *Service) Get(ctx context.Context, id string) (Result, error) {
	rw, err := loadRow(ctx, s.db, id)
	if isNoRows(err) || (err == nil && rw.deleted) {
		return Result{}, fmt.Errorf("result %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Result{}, fmt.Errorf("results: reading %q: %w", id, err)
	}
	return s.presentOne(ctx, rw), nil
}

// List limits.
const (
	defaultListLimit = 50
	maxListLimit     = 500
)

// List returns a page of results, newest first, and the cursor of the next
// page ("" on the last page).
func (s *Service) List(ctx context.Context, opts ListOptions) ([]Result, string, error) {
	limit := opts.Limit
	if limit <= 0 {
		limit = defaultListLimit
	}
	limit = min(limit, maxListLimit)
	query := "SELECT " + rowColumns + " FROM " + rowFrom + " WHERE r.deleted = FALSE"
	args := []any{}
	if opts.Owner != "" {
		if err := checkOwner(opts.Owner); err != nil {
			return nil, "", err
		}
		args = append(args, opts.Owner)
		query += fmt.Sprintf(" AND r.owner = $%d", len(args))
	}
	if opts.Cursor != "" {
		at, id, err := decodeCursor(opts.Cursor)
		if err != nil {
			return nil, "", err
		}
		args = append(args, dbTime(at), id)
		query += fmt.Sprintf(" AND (r.created_at < $%d OR (r.created_at = $%d AND r.id < $%d))", len(args)-1, len(args)-1, len(args))
	}
	query += fmt.Sprintf(" ORDER BY r.created_at DESC, r.id DESC LIMIT %d", limit+1)
	rows, err := s.db.direct().QueryContext(ctx, query, args...)
	if err != nil {
		return nil, "", fmt.Errorf("results: listing: %w", err)
	}
	defer rows.Close()
	var rws []row
	for rows.Next() {
		rw, err := scanRow(rows)
		if err != nil {
			return nil, "", fmt.Errorf("results: listing: %w", err)
		}
		rws = append(rws, rw)
	}
	if err := rows.Err(); err != nil {
		return nil, "", fmt.Errorf("results: listing: %w", err)
	}
	rows.Close()
	var out []Result
	if len(rws) > 0 {
		out = s.present(ctx, rws...)
	}
	next := ""
	if len(out) > limit {
		out = out[:limit]
		last := out[limit-1]
		next = encodeCursor(last.CreatedAt, last.ID)
	}
	return out, next, nil
}

// encodeCursor makes the opaque cursor after (at, id).
func encodeCursor(at time.Time, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(at.UnixMicro(), 10) + ":" + id))
}

// decodeCursor reads a cursor made by encodeCursor.
func decodeCursor(c string) (time.Time, string, error) {
	bad := fmt.Errorf("%w: cursor %q is not one this service returned", ErrInvalid, c)
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return time.Time{}, "", bad
	}
	us, id, ok := strings.Cut(string(b), ":")
	if !ok || id == "" {
		return time.Time{}, "", bad
	}
	n, err := strconv.ParseInt(us, 10, 64)
	if err != nil {
		return time.Time{}, "", bad
	}
	return time.UnixMicro(n).UTC(), id, nil
}

// Content says how to serve the bytes of result id: its local file, or a
// redirect to its public URL (Result.URL: rebuilt from the provider's
// current public base while the result's bucket is the one it is
// configured for, else the URL recorded at upload), so offloaded results
// keep serving after their provider is disabled or uninstalled.
//
// A local copy in another node's results folder (results.local_node) is
// not read here: Content.OwnerNode names that node, through which the
// caller serves it.
func (s *Service) Content(ctx context.Context, id string) (Content, error) {
	rw, err := loadRow(ctx, s.db, id)
	if isNoRows(err) || (err == nil && rw.deleted) {
		return Content{}, fmt.Errorf("result %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Content{}, fmt.Errorf("results: reading %q: %w", id, err)
	}
	res := s.presentOne(ctx, rw)
	c := Content{Result: res}
	switch {
	case res.Storage != Local && res.URL != "":
		c.RedirectURL = res.URL
		return c, nil
	case res.LocalPresent && !s.holds(rw.localNode):
		c.OwnerNode = rw.localNode
		return c, nil
	case res.LocalPresent:
		p, err := s.local.Path(res.Path)
		if err != nil {
			return Content{}, fmt.Errorf("%w: result %q: its local file %s: %v", ErrUnavailable, id, res.Path, err)
		}
		c.LocalPath = p
		return c, nil
	case res.Storage == Local:
		return Content{}, fmt.Errorf("%w: result %q is recorded as local but has no local file", ErrUnavailable, id)
	default:
		return Content{}, fmt.Errorf("%w: result %q lives in %q, which gave it no public URL (set the provider's public URL), and no local copy was kept", ErrUnavailable, id, res.Storage)
	}
}

// Delete deletes result id wherever it lives. The result is hidden at once;
// the object is deleted now when its provider answers, and otherwise by a
// queued delete job that is retried until it succeeds.
func (s *Service) Delete(ctx context.Context, id string) error {
	now := s.now()
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("results: deleting %q: %w", id, err)
	}
	defer rollback(tx)
	res, err := tx.ExecContext(ctx, "UPDATE results SET deleted = $1, updated_at = $2 WHERE id = $3 AND deleted = $4", true, dbTime(now), id, false)
	if err != nil {
		return fmt.Errorf("results: deleting %q: %w", id, err)
	}
	if n, err := res.RowsAffected(); err != nil {
		return fmt.Errorf("results: deleting %q: %w", id, err)
	} else if n == 0 {
		return fmt.Errorf("result %q: %w", id, ErrNotFound)
	}
	rw, err := loadRow(ctx, tx, id)
	if err != nil {
		return fmt.Errorf("results: deleting %q: %w", id, err)
	}
	key, bucket := rw.objectKey, rw.bucket
	if rw.storage == Local {
		key, bucket = rw.path, ""
	}
	// The delete removes the local copy too: it runs on the node that
	// holds it.
	node := ""
	if rw.localPresent || rw.storage == Local {
		node = rw.localNode
	}
	if !s.holds(node) {
		if err := s.insertQueuedJob(ctx, tx, kindDelete, id, rw.storage, key, bucket, node, now, now, "the local copy is on node "+node+", which deletes it"); err != nil {
			return fmt.Errorf("results: queueing the delete of %q: %w", id, err)
		}
		if err := tx.Commit(); err != nil {
			return fmt.Errorf("results: deleting %q: %w", id, err)
		}
		s.log.Info("results: delete queued for the node that holds the local copy", "result", id, "node", node)
		return nil
	}
	j, err := s.insertLeasedJob(ctx, tx, kindDelete, id, rw.storage, key, bucket, node, now)
	if err != nil {
		return fmt.Errorf("results: queueing the delete of %q: %w", id, err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("results: deleting %q: %w", id, err)
	}
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.DeleteTimeout)
	defer cancel()
	out := s.runFlight(dctx, j, rw.storage, func(jctx context.Context) outcome {
		o := s.deleteJob(jctx, j)
		if o.state == stateRetry && dctx.Err() != nil {
			o.handoff = true
		}
		return o
	})
	if out.err != nil && out.state != stateFail {
		s.log.Warn("results: delete queued for retry", "result", id, "provider", rw.storage, "err", short(out.err))
	}
	return nil
}

// Pending returns how many jobs are waiting, leased or not.
func (s *Service) Pending(ctx context.Context) (int, error) {
	var n int
	if err := s.db.QueryRowContext(ctx, "SELECT COUNT(*) FROM jobs").Scan(&n); err != nil {
		return 0, fmt.Errorf("results: counting jobs: %w", err)
	}
	return n, nil
}

// short trims an error for logs and last_error: one line, bounded length.
func short(err error) string {
	if err == nil {
		return ""
	}
	msg := strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return ' '
		}
		return r
	}, err.Error())
	const max = 500
	if len(msg) > max {
		msg = strings.ToValidUTF8(msg[:max], "") + "…"
	}
	return msg
}
