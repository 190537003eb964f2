//go:build !unix

package state

import "os"

// Without flock the single-writer rule is the operator's to keep.
func lockFile(*os.File) error { return nil }

func unlockFile(*os.File) {}
