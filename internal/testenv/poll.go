package testenv

import (
	"testing"
	"time"
)

// pollEvery is short next to every timeout the tests wait with, so a
// condition is seen within a few milliseconds of becoming true (some tests
// measure how soon).
const pollEvery = 10 * time.Millisecond

// Poll calls check until it answers "" (done). When timeout passes first
// it fails the test with check's last answer, which says what is still
// wrong.
func Poll(t testing.TB, timeout time.Duration, check func() (problem string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		problem := check()
		if problem == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v: %s", timeout, problem)
		}
		time.Sleep(pollEvery)
	}
}

// WaitFor polls cond until it holds, failing the test after timeout; what
// names what is waited for.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Poll(t, timeout, func() string {
		if cond() {
			return ""
		}
		return "waiting for " + what
	})
}
