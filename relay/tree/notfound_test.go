package tree

import (
	"fmt"
	"testing"
	"time"
)

// Found: the not-found cache was never pruned; every made-up path a
// client asked for stayed in memory.
func TestNotFoundCacheBounded(t *testing.T) {
	pl := &Puller{p: Params{NotFoundTTL: time.Minute}, notFound: map[string]time.Time{}}
	for i := range 3 * maxNotFound {
		pl.rememberNotFound(fmt.Sprintf("r/made-up-%d", i))
	}
	if n := len(pl.notFound); n > maxNotFound {
		t.Fatalf("%d entries cached, bound %d", n, maxNotFound)
	}
	if _, ok := pl.notFound[fmt.Sprintf("r/made-up-%d", 3*maxNotFound-1)]; !ok {
		t.Fatal("the newest entry is not cached")
	}
}
