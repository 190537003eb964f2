package ftpstore

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
	if err := s.pool.Do(ctx, func(c *conn) error { return notFound(c.sc.Delete(c.abs(n))) }); err != nil {
		return s.pathErr(ctx, "remove", name, err)
	}
	return nil
}
