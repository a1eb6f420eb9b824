package relay

import (
	"fmt"
	"strings"
)

// ValidName reports whether s is a valid ROOM or NAME of a stream's path
// ROOM/NAME: 1-64 characters of [A-Za-z0-9_-].
func ValidName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// SplitPath splits "ROOM/NAME" (leading and trailing slashes ignored) and
// validates both parts.
func SplitPath(p string) (room, name string, err error) {
	p = strings.Trim(p, "/")
	room, name, ok := strings.Cut(p, "/")
	if !ok || !ValidName(room) || !ValidName(name) {
		return "", "", fmt.Errorf("path %q is not ROOM/NAME ([A-Za-z0-9_-]{1,64} each)", p)
	}
	return room, name, nil
}
