package local

import (
	"context"

	"github.com/ihr-tools/ihr/filestore"
)

// Remove implements filestore.Remover.
func (s *Store) Remove(ctx context.Context, name string) error {
	n, err := filestore.CleanFileName("remove", name)
	if err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.root.Remove(rel(n)); err != nil {
		return pathErr("remove", name, err)
	}
	return nil
}
