// Command rrproxy runs several host nodes behind one address in local
// demos (scripts/demo --nodes N): a round-robin HTTP reverse proxy that
// sends each request to the next backend in turn and skips a backend that
// refuses connections (a node that is down).
//
//	go run ./scripts/rrproxy --addr 127.0.0.1:8080 --backend http://127.0.0.1:8081 --backend http://127.0.0.1:8082
//
// It sets X-Forwarded-For, -Host and -Proto (give the nodes
// --trusted-proxies 127.0.0.1), and names the node that answered in the
// X-Rrproxy-Backend response header. For development only.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/magicads/r2storage/internal/rrproxy"
)

// backends collects the repeated --backend flag.
type backends []string

func (b *backends) String() string     { return strings.Join(*b, ",") }
func (b *backends) Set(v string) error { *b = append(*b, v); return nil }

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "rrproxy:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	fs := flag.NewFlagSet("rrproxy", flag.ContinueOnError)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	var bs backends
	fs.Var(&bs, "backend", "a node's base URL, e.g. http://127.0.0.1:8081 (repeat for each node)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	p, err := rrproxy.New(bs...)
	if err != nil {
		return fmt.Errorf("%w (give --backend once per node)", err)
	}
	srv := &http.Server{Addr: *addr, Handler: p, ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	fmt.Fprintf(os.Stderr, "rrproxy: listening on %s for %s\n", *addr, bs.String())
	if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
