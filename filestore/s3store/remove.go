package s3store

import (
	"context"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/ihr-tools/ihr/filestore"
)

// Remove implements filestore.Remover. S3 answers a delete of a missing
// key with success, so a missing file is not reported.
func (s *Store) Remove(ctx context.Context, name string) error {
	n, err := filestore.CleanFileName("remove", name)
	if err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(n))}); err != nil {
		return s.pathErr("remove", name, err)
	}
	return nil
}
