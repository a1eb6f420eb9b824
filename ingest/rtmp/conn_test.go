package rtmp

import "testing"

// TestPublishURL: the room comes from the application and the name from the
// stream key; a token may ride on either (OBS users put it in the server
// URL or in the key).
func TestPublishURL(t *testing.T) {
	for _, c := range []struct{ app, key, path, token string }{
		{"room", "cam", "/room/cam", ""},
		{"room", "cam?token=abc", "/room/cam", "abc"},
		{"room?token=abc", "cam", "/room/cam", "abc"},
		{"room/", "/cam", "/room/cam", ""},
		{"room", "c%20am", "/room/c am", ""},
	} {
		u, err := publishURL(c.app, c.key)
		if err != nil {
			t.Fatalf("%q + %q: %v", c.app, c.key, err)
		}
		if u.Path != c.path || u.Query().Get("token") != c.token {
			t.Errorf("%q + %q: path %q token %q, want %q %q", c.app, c.key, u.Path, u.Query().Get("token"), c.path, c.token)
		}
	}
	for _, c := range [][2]string{{"room", "cam?token=%zz"}, {"ro%zzom", "cam"}} {
		if _, err := publishURL(c[0], c[1]); err == nil {
			t.Errorf("%q + %q accepted", c[0], c[1])
		}
	}
}
