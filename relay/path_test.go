package relay

import (
	"strings"
	"testing"
)

func TestSplitPath(t *testing.T) {
	if r, n, err := SplitPath("/room_1/cam-2"); err != nil || r != "room_1" || n != "cam-2" {
		t.Fatalf("%q %q %v", r, n, err)
	}
	for _, bad := range []string{"", "/room", "/a/b/c", "/a b/c", "/" + strings.Repeat("x", 65) + "/c"} {
		if _, _, err := SplitPath(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
