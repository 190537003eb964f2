// Package s3store is the file store for a prefix in an S3 bucket, on AWS
// or any S3-compatible service (endpoint, region, path-style addressing).
//
// S3 has no folders: a folder is a key prefix ending in "/". MkdirAll does
// nothing, listing a prefix nobody wrote under is an empty list rather than
// ErrNotExist, and Write and Move need no parent folder.
//
// Write is a single PutObject, which S3 applies atomically. A body of
// unknown length (anything but an io.ReadSeeker) is first spooled to a
// temporary file (Config.TempDir), never held in memory, because a signed
// PutObject over plain HTTP must know its length and hash up front. Objects
// are thus limited to 5 GiB, far above any ERP CSV.
//
// Move is CopyObject then DeleteObject. It refuses an existing destination
// by checking first (HeadObject); S3 offers no copy that refuses to
// replace, so an object created at the destination in the instant between
// the check and the copy would be replaced. If the delete fails after the
// copy, Move reports the error and the file is under both keys (never
// under none).
//
// The SDK's own retries are off: retrying is filestore.WithRetry's job, so
// one policy governs every store.
package s3store

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"go.uber.org/zap"

	"github.com/ihr-tools/ihr/filestore"
	"github.com/ihr-tools/ihr/filestore/internal/connpool"
)

// Config says which bucket and prefix, and how to reach and sign in.
type Config struct {
	Bucket string
	// Prefix is the store's folder in the bucket ("" for the whole
	// bucket), without leading or trailing "/".
	Prefix string
	// Endpoint is the service URL of an S3-compatible store
	// ("http://127.0.0.1:7070"); empty means AWS.
	Endpoint string
	// Region; empty takes it from the environment or shared config, else
	// us-east-1.
	Region string
	// PathStyle addresses buckets as endpoint/bucket/key instead of
	// bucket.endpoint/key (most S3-compatible stores need it).
	PathStyle bool
	// AccessKeyID and SecretAccessKey are static credentials; empty means
	// the standard AWS chain (environment, shared files, SSO, web identity,
	// instance role).
	AccessKeyID, SecretAccessKey string
	// Timeout bounds connecting, waiting for a response's headers, and
	// every network read or write (default 30 s).
	Timeout time.Duration
	// TempDir holds uploads of unknown length while they spool (default
	// os.TempDir()).
	TempDir string
	// DialContext opens TCP connections (default net.Dialer). Tests use it
	// to inject faults.
	DialContext func(ctx context.Context, network, addr string) (net.Conn, error)
}

// Store is a prefix in an S3 bucket. It is safe for concurrent use.
type Store struct {
	cfg    Config
	prefix string // "" or "a/b/"
	client *s3.Client
	http   aws.HTTPClient
	log    *zap.Logger
}

var _ filestore.Store = (*Store)(nil)

// New builds the client; it sends no request (ctx bounds loading the
// shared AWS configuration). log may be nil.
func New(ctx context.Context, cfg Config, log *zap.Logger) (*Store, error) {
	if log == nil {
		log = zap.NewNop()
	}
	if cfg.Bucket == "" {
		return nil, errors.New("s3 store: bucket is required")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = filestore.DefaultTimeout
	}
	prefix, err := filestore.CleanName(strings.Trim(cfg.Prefix, "/"))
	if err != nil {
		return nil, fmt.Errorf("s3 store: prefix: %w", err)
	}
	if prefix != "" {
		prefix += "/"
	}
	if (cfg.AccessKeyID == "") != (cfg.SecretAccessKey == "") {
		return nil, errors.New("s3 store: give both access key id and secret access key, or neither")
	}
	// A BuildableClient, because the SDK adds AWS_CA_BUNDLE to it (and
	// refuses any other client when that is set).
	hc := awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return connpool.Dial(ctx, cfg.DialContext, addr, cfg.Timeout)
		}
		tr.ResponseHeaderTimeout = cfg.Timeout
		tr.TLSHandshakeTimeout = cfg.Timeout
		tr.MaxIdleConnsPerHost = 16
	})
	opts := []func(*config.LoadOptions) error{
		config.WithHTTPClient(hc),
		config.WithRetryer(func() aws.Retryer { return aws.NopRetryer{} }),
		// Checksums only where S3 demands them: S3-compatible stores vary
		// in their support of the newer defaults.
		config.WithRequestChecksumCalculation(aws.RequestChecksumCalculationWhenRequired),
		config.WithResponseChecksumValidation(aws.ResponseChecksumValidationWhenRequired),
		config.WithDefaultRegion("us-east-1"),
	}
	if cfg.Region != "" {
		opts = append(opts, config.WithRegion(cfg.Region))
	}
	if cfg.AccessKeyID != "" {
		opts = append(opts, config.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, "")))
	}
	awsCfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 store: AWS configuration: %w", err)
	}
	if bc, ok := awsCfg.HTTPClient.(*awshttp.BuildableClient); ok {
		// Freeze it into the client it builds, whose idle connections
		// Close can then drop.
		awsCfg.HTTPClient = bc.Freeze()
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		o.UsePathStyle = cfg.PathStyle
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
	})
	return &Store{cfg: cfg, prefix: prefix, client: client, http: awsCfg.HTTPClient, log: log}, nil
}

func (s *Store) key(clean string) string { return s.prefix + clean }

func statusOf(err error) int {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		return re.HTTPStatusCode()
	}
	return 0
}

func codeOf(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

// classify maps S3 answers onto the store's errors: a missing key is
// ErrNotExist; refused credentials and a missing bucket are permanent.
func classify(err error) error {
	if err == nil {
		return nil
	}
	switch code := codeOf(err); {
	case code == "NoSuchBucket":
		return filestore.Permanent(err)
	case code == "NoSuchKey", code == "NotFound", statusOf(err) == http.StatusNotFound:
		return fmt.Errorf("%w (%w)", filestore.ErrNotExist, err)
	case code == "AccessDenied", code == "InvalidAccessKeyId", code == "SignatureDoesNotMatch",
		statusOf(err) == http.StatusForbidden:
		return filestore.Permanent(err)
	}
	return err
}

func (s *Store) pathErr(op, name string, err error) error {
	return &filestore.PathError{Op: "s3 " + op, Name: name, Err: classify(err)}
}

func etag(p *string) string { return strings.Trim(aws.ToString(p), `"`) }

func (s *Store) List(ctx context.Context, dir string) ([]filestore.FileInfo, error) {
	d, err := filestore.CleanName(dir)
	if err != nil {
		return nil, err
	}
	p := s.prefix
	if d != "" {
		p += d + "/"
	}
	var out []filestore.FileInfo
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: aws.String(s.cfg.Bucket), Prefix: aws.String(p), Delimiter: aws.String("/"),
	})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, s.pathErr("list", dir, err)
		}
		for _, o := range page.Contents {
			name := strings.TrimPrefix(aws.ToString(o.Key), p)
			if name == "" || !filestore.Listed(s.log, "s3", dir, name) {
				continue // "": the folder's own marker object
			}
			out = append(out, filestore.FileInfo{
				Name: name, Size: aws.ToInt64(o.Size), ModTime: aws.ToTime(o.LastModified), ETag: etag(o.ETag),
			})
		}
	}
	filestore.SortByName(out)
	return out, nil
}

func (s *Store) Stat(ctx context.Context, name string) (filestore.FileInfo, error) {
	n, err := filestore.CleanName(name)
	if err != nil {
		return filestore.FileInfo{}, err
	}
	if n == "" {
		return filestore.FileInfo{}, s.pathErr("stat", name, fmt.Errorf("the root is not a file: %w", filestore.ErrNotExist))
	}
	h, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(n))})
	if err != nil {
		return filestore.FileInfo{}, s.pathErr("stat", name, err)
	}
	return filestore.FileInfo{
		Name: path.Base(n), Size: aws.ToInt64(h.ContentLength), ModTime: aws.ToTime(h.LastModified), ETag: etag(h.ETag),
	}, nil
}

func (s *Store) Open(ctx context.Context, name string, offset int64) (io.ReadCloser, error) {
	n, err := filestore.CleanName(name)
	if err != nil {
		return nil, err
	}
	if n == "" {
		return nil, s.pathErr("open", name, fmt.Errorf("the root is not a file: %w", filestore.ErrNotExist))
	}
	in := &s3.GetObjectInput{Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(n))}
	if offset > 0 {
		in.Range = aws.String(fmt.Sprintf("bytes=%d-", offset))
	}
	out, err := s.client.GetObject(ctx, in)
	if err != nil {
		if offset > 0 && (codeOf(err) == "InvalidRange" || statusOf(err) == http.StatusRequestedRangeNotSatisfiable) {
			// A range starting at the very end is "not satisfiable";
			// for us it is an empty tail.
			if fi, serr := s.Stat(ctx, name); serr == nil && fi.Size == offset {
				return io.NopCloser(strings.NewReader("")), nil
			}
		}
		return nil, s.pathErr("open", name, err)
	}
	return &reader{s: s, name: name, body: out.Body}, nil
}

// reader names the file in stream errors. net/http already fails a body
// that ends before its Content-Length with io.ErrUnexpectedEOF.
type reader struct {
	s    *Store
	name string
	body io.ReadCloser
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.body.Read(p)
	if err != nil && err != io.EOF {
		err = r.s.pathErr("read", r.name, err)
	}
	return n, err
}

func (r *reader) Close() error { return r.body.Close() }

func (s *Store) Write(ctx context.Context, name string, body io.Reader) error {
	n, err := filestore.CleanFileName("s3 write", name)
	if err != nil {
		return err
	}
	rs, ok := body.(io.ReadSeeker)
	if !ok {
		f, err := s.spool(ctx, body)
		if err != nil {
			return s.pathErr("write", name, err)
		}
		defer func() {
			f.Close()
			os.Remove(f.Name())
		}()
		rs = f
	}
	start, err := rs.Seek(0, io.SeekCurrent)
	if err != nil {
		return s.pathErr("write", name, err)
	}
	end, err := rs.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = rs.Seek(start, io.SeekStart)
	}
	if err != nil {
		return s.pathErr("write", name, err)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.cfg.Bucket), Key: aws.String(s.key(n)),
		Body: rs, ContentLength: aws.Int64(end - start),
	})
	if err != nil {
		return s.pathErr("write", name, err)
	}
	return nil
}

// spool copies body to a fresh temporary file, positioned at its start.
func (s *Store) spool(ctx context.Context, body io.Reader) (*os.File, error) {
	f, err := os.CreateTemp(s.cfg.TempDir, "ihr-s3-upload-*")
	if err != nil {
		return nil, fmt.Errorf("spool upload: %w", err)
	}
	_, err = io.Copy(f, filestore.ContextReader(ctx, body))
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		f.Close()
		os.Remove(f.Name())
		return nil, err
	}
	return f, nil
}

// copySource is the x-amz-copy-source value: bucket and key, each path
// segment escaped so spaces and non-ASCII names survive.
func (s *Store) copySource(key string) string {
	parts := strings.Split(key, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return url.PathEscape(s.cfg.Bucket) + "/" + strings.Join(parts, "/")
}

func (s *Store) Move(ctx context.Context, src, dst string) error {
	from, to, err := filestore.CleanMoveNames("s3 move", src, dst)
	if err != nil {
		return err
	}
	bucket := aws.String(s.cfg.Bucket)
	head, err := s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(s.key(from))})
	if err != nil {
		return s.pathErr("move", src, err)
	}
	_, err = s.client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: bucket, Key: aws.String(s.key(to))})
	switch {
	case err == nil:
		return s.pathErr("move", src, fmt.Errorf("destination %s: %w", dst, filestore.ErrExist))
	case !errors.Is(classify(err), filestore.ErrNotExist):
		return s.pathErr("move", src, err)
	}
	_, err = s.client.CopyObject(ctx, &s3.CopyObjectInput{
		Bucket: bucket, Key: aws.String(s.key(to)), CopySource: aws.String(s.copySource(s.key(from))),
		// Copy only the version we looked at: if src was replaced
		// meanwhile, fail rather than archive a file we did not check.
		CopySourceIfMatch: head.ETag,
	})
	if err != nil {
		return s.pathErr("move", src, err)
	}
	_, err = s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: bucket, Key: aws.String(s.key(from))})
	if err != nil {
		return s.pathErr("move", src, fmt.Errorf("copied to %s but could not delete the original: %w", dst, err))
	}
	return nil
}

// MkdirAll only checks the name: S3 folders exist by having objects.
func (s *Store) MkdirAll(ctx context.Context, dir string) error {
	if _, err := filestore.CleanName(dir); err != nil {
		return err
	}
	return ctx.Err()
}

// Close drops idle HTTP connections.
func (s *Store) Close() error {
	if c, ok := s.http.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
	return nil
}
