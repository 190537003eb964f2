package filestore

import (
	"context"
	"errors"
)

// ErrUnsupported: the store cannot do the operation.
var ErrUnsupported = errors.New("filestore: not supported by this store")

// Remover is a Store that can delete a file. It is kept out of Store on
// purpose: the worker never deletes, except through opt-in retention
// (package retention), which asks for it by type assertion. Removing a
// missing file either wraps ErrNotExist or succeeds (S3 cannot tell the
// two apart): callers treat both as done.
type Remover interface {
	Remove(ctx context.Context, name string) error
}

// Remove implements Remover when the wrapped store does; it is retried
// like every other operation (a retried Remove that finds the file gone
// has done its job).
func (r *retryStore) Remove(ctx context.Context, name string) error {
	rm, ok := r.s.(Remover)
	if !ok {
		return &PathError{Op: "remove", Name: name, Err: ErrUnsupported}
	}
	return r.do(ctx, "remove", name, func(attempt int) error {
		err := rm.Remove(ctx, name)
		if attempt > 1 && errors.Is(err, ErrNotExist) {
			return nil
		}
		return err
	})
}
