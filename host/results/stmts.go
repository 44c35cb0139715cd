package results

import (
	"context"
	"database/sql"
	"fmt"
	"strings"
	"sync"
)

// maxCachedStatements bounds the statements a stmtDB keeps prepared.
const maxCachedStatements = 128

// stmtDB is the results database with its statements prepared once per
// connection and kept, instead of parsed again on every call: parsing was
// a third of the SQLite work of a queued upload. ExecContext,
// QueryContext and QueryRowContext shadow *sql.DB's; statements built
// with a varying text (lists, limits) go to the embedded *sql.DB (see
// direct), and past maxCachedStatements everything does.
type stmtDB struct {
	*sql.DB
	// detach runs the statements without their context's cancellation
	// (SQLite: see newStmtDB).
	detach bool
	mu     sync.Mutex
	stmts  map[string]*sql.Stmt
}

// newStmtDB wraps db. On SQLite, statements outside transactions run
// detached from their context's cancellation: the driver starts a
// goroutine to watch a cancellable context for every statement, a large
// share of a queued upload's scheduling work, while a SQLite statement
// here takes milliseconds and a wait for its lock ends at busy_timeout.
func newStmtDB(db *sql.DB) *stmtDB {
	return &stmtDB{DB: db, detach: strings.Contains(strings.ToLower(fmt.Sprintf("%T", db.Driver())), "sqlite"), stmts: map[string]*sql.Stmt{}}
}

// ctx is the context a statement runs with.
func (d *stmtDB) ctx(ctx context.Context) context.Context {
	if d.detach {
		return context.WithoutCancel(ctx)
	}
	return ctx
}

// stmt returns query prepared, or nil when the cache is full or the
// statement cannot be prepared now (the caller then runs it unprepared,
// which reports the same error).
func (d *stmtDB) stmt(ctx context.Context, query string) *sql.Stmt {
	d.mu.Lock()
	st, ok := d.stmts[query]
	full := len(d.stmts) >= maxCachedStatements
	d.mu.Unlock()
	if ok || full {
		return st
	}
	st, err := d.DB.PrepareContext(ctx, query)
	if err != nil {
		return nil
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if cur, ok := d.stmts[query]; ok {
		st.Close()
		return cur
	}
	d.stmts[query] = st
	return st
}

// ExecContext runs query prepared.
func (d *stmtDB) ExecContext(ctx context.Context, query string, args ...any) (sql.Result, error) {
	ctx = d.ctx(ctx)
	if st := d.stmt(ctx, query); st != nil {
		return st.ExecContext(ctx, args...)
	}
	return d.DB.ExecContext(ctx, query, args...)
}

// QueryContext runs query prepared.
func (d *stmtDB) QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error) {
	ctx = d.ctx(ctx)
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryContext(ctx, args...)
	}
	return d.DB.QueryContext(ctx, query, args...)
}

// QueryRowContext runs query prepared.
func (d *stmtDB) QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row {
	ctx = d.ctx(ctx)
	if st := d.stmt(ctx, query); st != nil {
		return st.QueryRowContext(ctx, args...)
	}
	return d.DB.QueryRowContext(ctx, query, args...)
}

// warm prepares queries ahead of a transaction that runs them with
// txExec. It must not run inside one: preparing takes a connection from
// the pool, which may wait for the transaction's own lock (SQLite).
func (d *stmtDB) warm(ctx context.Context, queries ...string) {
	for _, q := range queries {
		d.stmt(ctx, q)
	}
}

// txExec runs query in tx, prepared when warm prepared it: the statement
// is then prepared on the transaction's own connection (never on
// another) and stays prepared there for later calls.
func (d *stmtDB) txExec(ctx context.Context, tx *sql.Tx, query string, args ...any) (sql.Result, error) {
	d.mu.Lock()
	st := d.stmts[query]
	d.mu.Unlock()
	if st != nil {
		return tx.StmtContext(ctx, st).ExecContext(ctx, args...)
	}
	return tx.ExecContext(ctx, query, args...)
}

// direct is the database without the statement cache, for statements
// whose text varies.
func (d *stmtDB) direct() *sql.DB { return d.DB }
