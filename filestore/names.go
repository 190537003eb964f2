package filestore

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"strings"
)

// tempPrefix starts the names under which stores upload before the final
// rename. The leading dot hides them from most FTP listings; List drops them
// everywhere, so a half-written file is never offered to a reader.
const tempPrefix = ".ihr-part-"

// TempName returns a fresh, unguessable base name for an upload in
// progress. It does not embed the final name: that keeps it short enough
// for any file system whatever the final name's length.
func TempName() string {
	var b [12]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
	return tempPrefix + hex.EncodeToString(b[:]) + ".tmp"
}

// IsTempName reports whether base is an upload in progress (see TempName).
// Stores leave such names out of List.
func IsTempName(base string) bool { return strings.HasPrefix(base, tempPrefix) }

// CheckListedName vets a base name as a server listed it, before a store
// hands it out. A name that is empty, "." or "..", or holds a separator or
// NUL could lead a caller outside the listed folder; it is refused with an
// error wrapping ErrBadName (stores skip such entries and log them).
func CheckListedName(name string) error {
	switch {
	case name == "", name == ".", name == "..",
		strings.ContainsAny(name, "/\\\x00"):
		return fmt.Errorf("listed name %q: %w", name, ErrBadName)
	}
	return nil
}

// permanentError marks an error that retrying cannot fix.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

// Permanent marks err as one that retrying cannot fix (a refused login, an
// unknown host key, a certificate that does not verify), so WithRetry gives
// up at once. Permanent(nil) is nil.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanentError{err}
}

// IsPermanent reports whether retrying err is pointless: it was marked with
// Permanent, or it says the name is missing, taken, bad or forbidden.
// Context errors are not judged here: a store's own timeout is worth a
// retry, the caller's cancelled context is not, and only the caller's ctx
// tells them apart (WithRetry checks it).
func IsPermanent(err error) bool {
	var p *permanentError
	switch {
	case err == nil:
		return false
	case errors.As(err, &p),
		errors.Is(err, ErrNotExist), errors.Is(err, ErrExist),
		errors.Is(err, ErrBadName), errors.Is(err, fs.ErrPermission),
		errors.Is(err, errChangedWhileReading):
		return true
	}
	return false
}
