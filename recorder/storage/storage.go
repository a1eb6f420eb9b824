// Package storage is where finished recording files end up: a local
// directory (the default) or an S3-compatible bucket. The recorder writes
// every file to its own spool first and hands it here afterwards, so a
// backend only needs whole-object operations.
package storage

import (
	"context"
	"errors"
	"io"
)

// ErrNotFound is returned by Open for a key the backend does not hold.
var ErrNotFound = errors.New("object not found")

// ErrUnreachable wraps errors of a backend that could not be contacted at
// all (no answer), as opposed to one that answered with a refusal.
var ErrUnreachable = errors.New("storage unreachable")

// Preparer is a Storage that checks, and if need be creates, its
// destination before use (an S3 bucket). The recorder calls it at start.
type Preparer interface {
	Prepare(ctx context.Context) error
}

// Storage stores recording files under slash-separated keys such as
// "room/name/20260101T120000Z-ab12cd/seg_000001.m4s".
type Storage interface {
	// PutFile stores the local file at path under key, replacing any object
	// already there. It must be idempotent: the recorder retries after
	// errors and after crashes, so the same key may be put several times.
	PutFile(ctx context.Context, key, path string) error
	// Open returns the object's content and size.
	Open(ctx context.Context, key string) (io.ReadCloser, int64, error)
	// DeletePrefix removes every object whose key starts with prefix.
	DeletePrefix(ctx context.Context, prefix string) error
	// String names the backend for logs ("local:/data/recordings").
	String() string
}
