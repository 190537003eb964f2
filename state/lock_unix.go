//go:build unix

package state

import (
	"os"
	"syscall"
)

// lockFile takes an exclusive, non-blocking advisory lock that the kernel
// drops when the process dies, so a kill -9 never leaves the ledger locked.
func lockFile(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB) }

func unlockFile(f *os.File) { _ = syscall.Flock(int(f.Fd()), syscall.LOCK_UN) }
