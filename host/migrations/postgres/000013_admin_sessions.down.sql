DROP TABLE admin_password;
DROP TABLE login_backoff;
DROP INDEX login_attempts_window_idx;
DROP TABLE login_attempts;
DROP INDEX admin_sessions_created_idx;
DROP INDEX admin_sessions_last_seen_idx;
DROP TABLE admin_sessions;
