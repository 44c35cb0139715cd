//go:build !unix

package app

// lockDataDir does nothing where flock is not available: run one host per
// data dir there.
func lockDataDir(string) (func(), error) { return func() {}, nil }
