package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3Config configures an S3-compatible bucket (AWS S3, MinIO, Cloudflare
// R2, Tencent COS, versitygw...).
type S3Config struct {
	// Endpoint is the service URL, e.g. "http://127.0.0.1:9000"; empty
	// means AWS's own endpoints for Region.
	Endpoint string `flag:"s3-endpoint" help:"S3-compatible endpoint URL (empty: AWS)"`
	// Region defaults to DefaultRegion (most S3-compatible servers ignore
	// it but the signature needs one).
	Region string `flag:"s3-region" help:"S3 region"`
	Bucket string `flag:"s3-bucket" help:"S3 bucket for recordings (empty: local directory)"`
	// Prefix is prepended to every key ("recordings/" -> "recordings/room/...").
	Prefix string `flag:"s3-prefix" help:"key prefix for recordings in the bucket"`
	// PathStyle addresses the bucket as ENDPOINT/BUCKET/KEY instead of
	// BUCKET.ENDPOINT/KEY; most self-hosted servers need it.
	PathStyle bool `flag:"s3-path-style" help:"path-style bucket addressing (most self-hosted servers)"`
	// AccessKeyID and SecretAccessKey are static credentials; when empty the
	// standard AWS chain (environment, shared files, instance role) is used.
	AccessKeyID     string `flag:"s3-access-key" help:"S3 access key (empty: the standard AWS credential chain)"`
	SecretAccessKey string `flag:"s3-secret-key" help:"S3 secret key"`
	SessionToken    string
}

// S3 stores objects in a bucket.
type S3 struct {
	cfg    S3Config
	client *s3.Client
	presig *s3.PresignClient
	ready  atomic.Bool // the bucket is known to exist
}

// DefaultRegion is the region of an S3Config without one.
const DefaultRegion = "us-east-1"

// NewS3 builds a client. It does not contact the bucket (see Prepare): the
// recorder must start (and spool) even while the bucket is unreachable.
func NewS3(ctx context.Context, cfg S3Config) (*S3, error) {
	if cfg.Bucket == "" {
		return nil, errors.New("s3 storage: bucket is required")
	}
	if cfg.Region == "" {
		cfg.Region = DefaultRegion
	}
	opts := []func(*awsconfig.LoadOptions) error{awsconfig.WithRegion(cfg.Region)}
	if cfg.AccessKeyID != "" {
		opts = append(opts, awsconfig.WithCredentialsProvider(
			credentials.NewStaticCredentialsProvider(cfg.AccessKeyID, cfg.SecretAccessKey, cfg.SessionToken)))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 storage: %w", err)
	}
	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if cfg.Endpoint != "" {
			o.BaseEndpoint = aws.String(cfg.Endpoint)
		}
		o.UsePathStyle = cfg.PathStyle
		// Many S3-compatible servers reject the SDK's default trailing
		// CRC checksums (aws-chunked encoding); only send them when an
		// operation requires one.
		o.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
		o.ResponseChecksumValidation = aws.ResponseChecksumValidationWhenRequired
		// The recorder retries uploads itself, with its own backoff and
		// without limit, so the SDK's retries would only add delay.
		o.RetryMaxAttempts = 1
	})
	return &S3{cfg: cfg, client: client, presig: s3.NewPresignClient(client)}, nil
}

func (s *S3) String() string {
	return fmt.Sprintf("s3:%s/%s/%s", strings.TrimSuffix(s.cfg.Endpoint, "/"), s.cfg.Bucket, s.cfg.Prefix)
}

func (s *S3) key(k string) string { return s.cfg.Prefix + k }

// EnsureBucket makes sure the bucket exists and creates it when it does
// not. Errors say what to fix: a bucket that is missing and cannot be
// created, refused access, or (wrapping ErrUnreachable) no answer at all.
func (s *S3) EnsureBucket(ctx context.Context) error {
	if s.ready.Load() {
		return nil
	}
	_, err := s.client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: &s.cfg.Bucket})
	switch code := httpStatus(err); {
	case err == nil:
	case code == 0:
		return fmt.Errorf("s3 storage: %s: %w: %w", s, ErrUnreachable, err)
	case code == http.StatusNotFound:
		_, err = s.client.CreateBucket(ctx, &s3.CreateBucketInput{Bucket: &s.cfg.Bucket})
		var owned *types.BucketAlreadyOwnedByYou
		if err != nil && !errors.As(err, &owned) {
			if httpStatus(err) == 0 {
				return fmt.Errorf("s3 storage: %s: %w: %w", s, ErrUnreachable, err)
			}
			return fmt.Errorf("s3 storage: bucket %q does not exist and could not be created (create it, or allow s3:CreateBucket): %w",
				s.cfg.Bucket, err)
		}
	case code == http.StatusForbidden:
		return fmt.Errorf("s3 storage: bucket %q: access denied (check s3-access-key/s3-secret-key, and that they may list the bucket): %w",
			s.cfg.Bucket, err)
	default:
		return fmt.Errorf("s3 storage: bucket %q: %w", s.cfg.Bucket, err)
	}
	s.ready.Store(true)
	return nil
}

// Prepare implements Preparer.
func (s *S3) Prepare(ctx context.Context) error { return s.EnsureBucket(ctx) }

// httpStatus is the HTTP status of a failed S3 call, 0 when the service
// never answered (network error, timeout).
func httpStatus(err error) int {
	var re *awshttp.ResponseError
	if err != nil && errors.As(err, &re) && re.ResponseError != nil && re.Response != nil && re.Response.Response != nil {
		return re.Response.StatusCode
	}
	return 0
}

// PutFile uploads the file in one PutObject (segments are a few MB at
// most). The body is a seekable file, so the SDK can sign it and rewind it.
func (s *S3) PutFile(ctx context.Context, key, path string) error {
	// The bucket may have been unreachable at start: make it now, before
	// the first upload.
	if err := s.EnsureBucket(ctx); err != nil {
		return err
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("s3 storage: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("s3 storage: %w", err)
	}
	_, err = s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket:        &s.cfg.Bucket,
		Key:           aws.String(s.key(key)),
		Body:          f,
		ContentLength: aws.Int64(st.Size()),
		ContentType:   aws.String(ContentType(key)),
	})
	if err != nil {
		return fmt.Errorf("s3 storage: put %s: %w", key, err)
	}
	return nil
}

// Open streams the object.
func (s *S3) Open(ctx context.Context, key string) (io.ReadCloser, int64, error) {
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(s.key(key))})
	if err != nil {
		var nsk *types.NoSuchKey
		if errors.As(err, &nsk) {
			return nil, 0, fmt.Errorf("%s: %w", key, ErrNotFound)
		}
		return nil, 0, fmt.Errorf("s3 storage: get %s: %w", key, err)
	}
	return out.Body, aws.ToInt64(out.ContentLength), nil
}

// PresignGet returns a URL that fetches the object without credentials
// for ttl, so players can read segments straight from the bucket.
func (s *S3) PresignGet(ctx context.Context, key string, ttl time.Duration) (string, error) {
	req, err := s.presig.PresignGetObject(ctx, &s3.GetObjectInput{Bucket: &s.cfg.Bucket, Key: aws.String(s.key(key))},
		s3.WithPresignExpires(ttl))
	if err != nil {
		return "", fmt.Errorf("s3 storage: presign %s: %w", key, err)
	}
	return req.URL, nil
}

// DeletePrefix lists and deletes objects one by one: DeleteObjects needs a
// Content-MD5 that not every S3-compatible server accepts from this SDK.
func (s *S3) DeletePrefix(ctx context.Context, prefix string) error {
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.cfg.Bucket, Prefix: aws.String(s.key(prefix)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("s3 storage: list %s: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.cfg.Bucket, Key: obj.Key}); err != nil {
				return fmt.Errorf("s3 storage: delete %s: %w", aws.ToString(obj.Key), err)
			}
		}
	}
	return nil
}

// List returns the keys below prefix (without the configured Prefix).
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var keys []string
	p := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{
		Bucket: &s.cfg.Bucket, Prefix: aws.String(s.key(prefix)),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("s3 storage: list %s: %w", prefix, err)
		}
		for _, obj := range page.Contents {
			keys = append(keys, strings.TrimPrefix(aws.ToString(obj.Key), s.cfg.Prefix))
		}
	}
	return keys, nil
}

// ContentType is the media type of a recording file, by extension.
func ContentType(key string) string {
	switch {
	case strings.HasSuffix(key, ".m3u8"):
		return "application/vnd.apple.mpegurl"
	case strings.HasSuffix(key, ".m4s"):
		return "video/iso.segment"
	case strings.HasSuffix(key, ".mp4"):
		return "video/mp4"
	case strings.HasSuffix(key, ".json"):
		return "application/json"
	}
	return "application/octet-stream"
}
