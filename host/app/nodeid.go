package app

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// NodeIDFile is the file in the data dir that names this host node in job
// leases, so a restarted node releases the leases it held at once.
const NodeIDFile = "node.id"

// loadNodeID returns this node's id from <dataDir>/node.id, creating the
// file (mode 0600, 32 random hex digits) on first start. Two first starts
// racing agree on one id.
func loadNodeID(dataDir string) (string, error) {
	path := filepath.Join(dataDir, NodeIDFile)
	id, err := readNodeID(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	tmp, err := os.CreateTemp(dataDir, ".node.id-*")
	if err != nil {
		return "", fmt.Errorf("node id: creating %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	_, werr := tmp.WriteString(hex.EncodeToString(b[:]) + "\n")
	if cerr := tmp.Close(); werr == nil {
		werr = cerr
	}
	if werr != nil {
		return "", fmt.Errorf("node id: writing %s: %w", path, werr)
	}
	// A link never replaces an existing file: a concurrent first start
	// that won keeps its id.
	if err := os.Link(tmp.Name(), path); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("node id: creating %s: %w", path, err)
	}
	return readNodeID(path)
}

// readNodeID reads and checks a node id file.
func readNodeID(path string) (string, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		return "", fmt.Errorf("node id: reading %s: %w", path, err)
	}
	id := strings.TrimSpace(string(data))
	if _, err := hex.DecodeString(id); err != nil || len(id) != 32 {
		return "", fmt.Errorf("node id: %s does not hold a node id (32 hex digits): delete it and start again, a new one is created", path)
	}
	return id, nil
}
