-- admin_sessions: the admin console's sign-in sessions, shared by every
-- host node on this database and kept across restarts. A row is keyed by
-- the hex SHA-256 of the session id: the id itself (the cookie) is never
-- stored, and the session's CSRF token is derived from the id (an HMAC
-- under it), so a copy of this table lets no one use a session or forge a
-- request. Times are Unix milliseconds. A session ends 12 hours after
-- last_seen_ms (written at most once a minute) or 7 days after created_ms;
-- expired rows are swept as new sessions start.
CREATE TABLE admin_sessions (
    id_hash      TEXT   NOT NULL PRIMARY KEY,
    user_name    TEXT   NOT NULL,
    role         TEXT   NOT NULL,
    created_ms   BIGINT NOT NULL,
    last_seen_ms BIGINT NOT NULL
);
CREATE INDEX admin_sessions_last_seen_idx ON admin_sessions (last_seen_ms);
CREATE INDEX admin_sessions_created_idx ON admin_sessions (created_ms);

-- login_attempts: the sign-in rate limiter's fixed windows, one row per
-- key ("ip:…" or "ip:…|user:…"): when the window started (Unix
-- milliseconds) and how many attempts it counted. Every node counts into
-- the same rows, in one transaction per attempt.
CREATE TABLE login_attempts (
    limit_key       TEXT    NOT NULL PRIMARY KEY,
    window_start_ms BIGINT  NOT NULL,
    attempts        INTEGER NOT NULL
);
CREATE INDEX login_attempts_window_idx ON login_attempts (window_start_ms);

-- login_backoff: the sign-in delay per user name ("user:admin", or
-- "user:?" for every unknown name): each attempt adds one to score, a
-- correct password takes its point back, and one point leaks away per
-- LoginWindow/LoginLimit since at_ms (Unix milliseconds). Above LoginLimit
-- a score delays that name's sign-ins; it never refuses them. Every node
-- scores into the same rows.
CREATE TABLE login_backoff (
    user_key TEXT             NOT NULL PRIMARY KEY,
    score    DOUBLE PRECISION NOT NULL,
    at_ms    BIGINT           NOT NULL
);

-- admin_password: the generated admin password's PBKDF2 hash (the form of
-- data/admin.pw), shared by every node on a PostgreSQL database: the
-- first node to start generates it, the others read it. One row at most.
-- A host on SQLite keeps using data/admin.pw.
CREATE TABLE admin_password (
    id         INTEGER NOT NULL PRIMARY KEY CHECK (id = 1),
    hash       TEXT    NOT NULL,
    created_ms BIGINT  NOT NULL
);
