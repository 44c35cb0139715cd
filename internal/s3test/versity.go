package s3test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// VersityInstall is the command that installs the versitygw version these
// helpers are written against.
const VersityInstall = "go install github.com/versity/versitygw/cmd/versitygw@v1.8.0"

const (
	readyTimeout = 30 * time.Second // how long a fresh versitygw may take to answer
	stopGrace    = 3 * time.Second  // SIGTERM grace before SIGKILL
	outputLimit  = 64 << 10         // bytes of versitygw output kept for diagnostics
)

var (
	errAddrInUse = errors.New("address already in use")
	errNoXattr   = errors.New("extended attributes not supported")
)

// Server is a versitygw process serving a POSIX directory over S3 with real
// SigV4 verification. Create it with StartVersity.
type Server struct {
	// Endpoint is the base URL, "http://127.0.0.1:PORT".
	Endpoint string
	// AccessKey is the randomly generated root access key ID.
	AccessKey string
	// SecretKey is the randomly generated root secret access key.
	SecretKey string
	// Region is the signing region the server expects: "auto" (R2's)
	// unless started with StartVersityIn.
	Region string

	t       testing.TB
	bin     string
	addr    string
	dataDir string
	metaDir string // sidecar metadata directory; empty when xattrs are used
	client  *s3.Client

	mu   sync.Mutex
	proc *process
}

// process is one running versitygw.
type process struct {
	cmd  *exec.Cmd
	out  *tailBuffer
	done chan struct{} // closed once cmd.Wait returned
	err  error         // cmd.Wait's result, valid after done is closed
}

// StartVersity starts a versitygw on a free loopback port, backed by a fresh
// temporary directory and with random credentials, waits until it answers
// signed requests, and stops it when the test ends. The binary is taken from
// $VERSITYGW, else $PATH, else the Go bin directory; if it is missing the test
// fails with the install command.
func StartVersity(t testing.TB) *Server {
	t.Helper()
	return startVersity(t, false, Region)
}

// StartVersityIn is StartVersity for a server that signs for region (an
// S3-compatible provider's, e.g. "us-east-1") instead of R2's "auto"; its
// Client signs for that region too.
func StartVersityIn(t testing.TB, region string) *Server {
	t.Helper()
	return startVersity(t, false, region)
}

// startVersity is StartVersity with the option to force sidecar metadata
// instead of extended attributes, signing for region.
func startVersity(t testing.TB, sidecar bool, region string) *Server {
	t.Helper()
	base := t.TempDir()
	s := &Server{
		AccessKey: randomHex(t, 10),
		SecretKey: randomHex(t, 20),
		Region:    region,
		t:         t,
		bin:       findVersity(t),
		dataDir:   filepath.Join(base, "data"),
	}
	if err := os.Mkdir(s.dataDir, 0o700); err != nil {
		t.Fatalf("s3test: %v", err)
	}
	if sidecar {
		s.useSidecar(t, base)
	}
	var err error
	for range 5 {
		s.addr, err = freeAddr()
		if err != nil {
			break
		}
		s.Endpoint = "http://" + s.addr
		var p *process
		p, err = s.launch(t.Context())
		if err == nil {
			s.proc = p
			break
		}
		if errors.Is(err, errNoXattr) && s.metaDir == "" {
			s.useSidecar(t, base)
			continue
		}
		if !errors.Is(err, errAddrInUse) {
			break
		}
	}
	if s.proc == nil {
		t.Fatalf("s3test: starting versitygw: %v", err)
	}
	hc := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	s.client = newClientIn(s.Region, s.Endpoint, s.AccessKey, s.SecretKey, hc)
	t.Cleanup(hc.CloseIdleConnections)
	t.Cleanup(s.Stop)
	return s
}

// useSidecar switches s to sidecar metadata stored in base/meta.
func (s *Server) useSidecar(t testing.TB, base string) {
	t.Helper()
	s.metaDir = filepath.Join(base, "meta")
	if err := os.MkdirAll(s.metaDir, 0o700); err != nil {
		t.Fatalf("s3test: %v", err)
	}
}

// Client returns an S3 client for the server with its root credentials.
func (s *Server) Client() *s3.Client { return s.client }

// CreateBucket creates a bucket, failing t on error.
func (s *Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	createBucket(t, s.client, name)
}

// Keys returns every object key in bucket, sorted.
func (s *Server) Keys(t testing.TB, bucket string) []string {
	t.Helper()
	return listKeys(t, s.client, bucket)
}

// GetObject returns an object's bytes, failing t on error.
func (s *Server) GetObject(t testing.TB, bucket, key string) []byte {
	t.Helper()
	return readObject(t, s.client, bucket, key)
}

// MultipartUploads returns the keys of the in-progress multipart uploads in
// bucket, sorted, one entry per upload.
func (s *Server) MultipartUploads(t testing.TB, bucket string) []string {
	t.Helper()
	return listUploads(t, s.client, bucket)
}

// StartMultipartUpload creates a multipart upload of key in bucket with one
// uploaded part and leaves it incomplete, as an uploader that crashed
// would. It returns the upload id.
func (s *Server) StartMultipartUpload(t testing.TB, bucket, key string, part []byte) string {
	t.Helper()
	return startUpload(t, s.client, bucket, key, part)
}

// Pid returns the process ID of the running versitygw, or 0 when stopped.
func (s *Server) Pid() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return 0
	}
	return s.proc.cmd.Process.Pid
}

// Stop terminates versitygw (its whole process group) and waits for it to
// exit; stored data is kept. Stopping a stopped server does nothing. Like
// Start it reports failures to the test that created the server, so call it
// from that test's goroutine.
func (s *Server) Stop() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc == nil {
		return
	}
	err := s.proc.stop()
	s.proc = nil
	if err != nil {
		s.t.Errorf("s3test: stopping versitygw: %v", err)
	}
}

// Start restarts a stopped versitygw on the same address, directory and
// credentials and waits until it answers. Starting a running server does
// nothing. A failure (for example the port was taken meanwhile) fails the
// test that created the server, so call it from that test's goroutine.
func (s *Server) Start() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.proc != nil {
		return
	}
	p, err := s.launch(s.t.Context())
	if err != nil {
		s.t.Fatalf("s3test: restarting versitygw on %s: %v", s.addr, err)
	}
	s.proc = p
}

// launch starts versitygw with s's settings and waits until it answers.
func (s *Server) launch(ctx context.Context) (*process, error) {
	args := []string{
		"--port", s.addr,
		"--access", s.AccessKey,
		"--secret", s.SecretKey,
		"--region", s.Region,
		"--quiet",
		"--keep-alive",
		"posix",
	}
	if s.metaDir != "" {
		args = append(args, "--sidecar", s.metaDir)
	}
	args = append(args, s.dataDir)
	cmd := exec.Command(s.bin, args...)
	cmd.Env = versityEnv()
	cmd.Dir = s.dataDir
	out := &tailBuffer{limit: outputLimit}
	cmd.Stdout = out
	cmd.Stderr = out
	cmd.SysProcAttr = sysProcAttr()
	cmd.WaitDelay = stopGrace
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	p := &process{cmd: cmd, out: out, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	if err := s.waitReady(ctx, p); err != nil {
		if stopErr := p.stop(); stopErr != nil {
			err = fmt.Errorf("%w (and stopping it: %v)", err, stopErr)
		}
		return nil, err
	}
	return p, nil
}

// waitReady polls with a signed ListBuckets until the server started as p
// answers it, p exits, or readyTimeout passes. Because the credentials are
// random, success also proves that no other server holds the port.
func (s *Server) waitReady(ctx context.Context, p *process) error {
	hc := &http.Client{Timeout: 2 * time.Second}
	defer hc.CloseIdleConnections()
	probe := newClientIn(s.Region, s.Endpoint, s.AccessKey, s.SecretKey, hc)
	noRetry := func(o *s3.Options) { o.Retryer = aws.NopRetryer{} }
	deadline := time.Now().Add(readyTimeout)
	var lastErr error
	for {
		select {
		case <-p.done:
			out := s.redact(p.out.String())
			err := fmt.Errorf("versitygw exited before answering (%v); output:\n%s", p.err, out)
			switch {
			case strings.Contains(out, "address already in use"):
				return fmt.Errorf("%w: %w", errAddrInUse, err)
			case strings.Contains(out, "xattr"):
				return fmt.Errorf("%w: %w", errNoXattr, err)
			}
			return err
		case <-ctx.Done():
			return fmt.Errorf("waiting for versitygw: %w", ctx.Err())
		default:
		}
		_, lastErr = probe.ListBuckets(ctx, &s3.ListBucketsInput{}, noRetry)
		if lastErr == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("versitygw did not answer on %s within %v (last error: %v); output:\n%s",
				s.addr, readyTimeout, lastErr, s.redact(p.out.String()))
		}
		select {
		case <-p.done:
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// redact removes the secret key from text that may be shown in test output.
func (s *Server) redact(text string) string {
	if s.SecretKey == "" {
		return text
	}
	return strings.ReplaceAll(text, s.SecretKey, "<redacted>")
}

// stop ends p's process group, SIGTERM first and SIGKILL after stopGrace,
// and waits for the process to be reaped. The group is only signalled while
// its leader is unreaped, so its ID cannot have been reused.
func (p *process) stop() error {
	select {
	case <-p.done:
		return nil
	default:
	}
	killGroup(p.cmd.Process, false)
	select {
	case <-p.done:
		return nil
	case <-time.After(stopGrace):
	}
	killGroup(p.cmd.Process, true)
	select {
	case <-p.done:
		return nil
	case <-time.After(10 * time.Second):
		return fmt.Errorf("versitygw (pid %d) did not exit after SIGKILL", p.cmd.Process.Pid)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("finding a free port: %w", err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		return "", err
	}
	return addr, nil
}

// versityEnv is the test's environment without the variables versitygw would
// read as configuration, so only the command line configures it.
func versityEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(name, "VGW_"),
			strings.HasPrefix(name, "ROOT_ACCESS_KEY"),
			strings.HasPrefix(name, "ROOT_SECRET"),
			name == "LOGFILE", name == "WEBHOOK":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// findVersity locates the versitygw binary: $VERSITYGW, then $PATH, then the
// Go bin directories ($GOBIN, $GOPATH/bin).
func findVersity(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("VERSITYGW"); p != "" {
		if err := checkExecutable(p); err != nil {
			t.Fatalf("s3test: $VERSITYGW: %v; install versitygw with: %s", err, VersityInstall)
		}
		return p
	}
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	dirs := goBinDirs()
	for _, dir := range dirs {
		p := filepath.Join(dir, "versitygw")
		if checkExecutable(p) == nil {
			return p
		}
	}
	t.Fatalf("s3test: versitygw not found in $VERSITYGW, $PATH or %s; install it with: %s",
		strings.Join(dirs, ", "), VersityInstall)
	return ""
}

// checkExecutable reports why path is not an executable regular file.
func checkExecutable(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() || fi.Mode().Perm()&0o111 == 0 {
		return fmt.Errorf("%s is not an executable file", path)
	}
	return nil
}

// goBinDirs returns the directories go install writes to, asking the go
// command when it is available and falling back to $GOBIN, $GOPATH and
// $HOME/go.
func goBinDirs() []string {
	gobin, gopath := os.Getenv("GOBIN"), os.Getenv("GOPATH")
	if goCmd, err := exec.LookPath("go"); err == nil {
		if out, err := exec.Command(goCmd, "env", "GOBIN", "GOPATH").Output(); err == nil {
			lines := strings.Split(strings.TrimRight(string(out), "\n"), "\n")
			if len(lines) == 2 {
				gobin, gopath = lines[0], lines[1]
			}
		}
	}
	if gopath == "" {
		if home, err := os.UserHomeDir(); err == nil {
			gopath = filepath.Join(home, "go")
		}
	}
	var dirs []string
	if gobin != "" {
		dirs = append(dirs, gobin)
	}
	for _, p := range filepath.SplitList(gopath) {
		if p != "" {
			dirs = append(dirs, filepath.Join(p, "bin"))
		}
	}
	return dirs
}

// tailBuffer is a concurrency-safe writer that keeps the last limit bytes.
type tailBuffer struct {
	mu    sync.Mutex
	limit int
	buf   bytes.Buffer
}

// Write appends p, dropping the oldest bytes beyond the limit.
func (b *tailBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.buf.Write(p)
	if extra := b.buf.Len() - b.limit; extra > 0 {
		b.buf.Next(extra)
	}
	return len(p), nil
}

// String returns the kept output.
func (b *tailBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
