package testenv

import (
	"bytes"
	"net"
	"sync"
	"testing"
)

// FreePort returns a TCP port of 127.0.0.1 that nothing listens on, for a
// program that must be told its port. Another process may take it before
// it is used: callers that can, retry.
func FreePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// Buffer collects what concurrent writers write (a logger's handler, a
// child process's stdout and stderr) for a test to read.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
