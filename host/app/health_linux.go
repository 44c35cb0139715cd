package app

import (
	"fmt"
	"syscall"
)

// stRdonly is ST_RDONLY, statfs's read-only mount flag.
const stRdonly = 0x1

// diskSpace says what is wrong with the disk of dir: read-only, or less
// than MinFreeDisk free; nil when neither.
func diskSpace(dir string) error {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return fmt.Errorf("unreadable: statfs %s: %w", dir, err)
	}
	if st.Flags&stRdonly != 0 {
		return fmt.Errorf("read-only: %s is on a read-only mount; remount it read-write", dir)
	}
	if free := st.Bavail * uint64(st.Bsize); free < MinFreeDisk {
		return fmt.Errorf("full: %s free on %s, at least %s needed; free space on its disk", mib(free), dir, mib(MinFreeDisk))
	}
	return nil
}
