package storage

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Local stores objects as files below a root directory.
type Local struct {
	root string
}

// NewLocal returns a backend rooted at dir, creating it if needed.
func NewLocal(dir string) (*Local, error) {
	if dir == "" {
		return nil, errors.New("local storage: empty directory")
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("local storage %q: %w", dir, err)
	}
	if err := os.MkdirAll(abs, 0o755); err != nil {
		return nil, fmt.Errorf("local storage: %w", err)
	}
	return &Local{root: abs}, nil
}

func (l *Local) String() string { return "local:" + l.root }

// file maps a key to a path, refusing keys that would escape the root.
func (l *Local) file(key string) (string, error) {
	clean := filepath.Clean("/" + filepath.FromSlash(key))
	if key == "" || strings.Contains(key, "..") {
		return "", fmt.Errorf("local storage: bad key %q", key)
	}
	return filepath.Join(l.root, clean), nil
}

// PutFile hard-links the spooled file into place when both are on the same
// file system (no copy, and the spool can drop its link at once) and copies
// it otherwise. A temporary name plus rename keeps readers from ever seeing
// a half-written object.
func (l *Local) PutFile(_ context.Context, key, path string) error {
	dst, err := l.file(key)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return fmt.Errorf("local storage: %w", err)
	}
	tmp := dst + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Link(path, tmp); err != nil {
		if err := copyFile(path, tmp); err != nil {
			_ = os.Remove(tmp)
			return fmt.Errorf("local storage: put %s: %w", key, err)
		}
	}
	if err := os.Rename(tmp, dst); err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("local storage: put %s: %w", key, err)
	}
	return nil
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	if err := out.Sync(); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// Open opens the object's file.
func (l *Local) Open(_ context.Context, key string) (io.ReadCloser, int64, error) {
	p, err := l.file(key)
	if err != nil {
		return nil, 0, err
	}
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	if err != nil {
		return nil, 0, fmt.Errorf("local storage: %w", err)
	}
	st, err := f.Stat()
	if err != nil || st.IsDir() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: %w", key, ErrNotFound)
	}
	return f, st.Size(), nil
}

// DeletePrefix removes the files below prefix. Recordings use a directory
// per recording, so the usual prefix ("room/name/ID/") is one directory.
func (l *Local) DeletePrefix(_ context.Context, prefix string) error {
	p, err := l.file(strings.TrimSuffix(prefix, "/"))
	if err != nil {
		return err
	}
	if p == l.root {
		return errors.New("local storage: refusing to delete the root")
	}
	if err := os.RemoveAll(p); err != nil {
		return fmt.Errorf("local storage: %w", err)
	}
	return nil
}
