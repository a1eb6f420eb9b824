package composite

import (
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/frames"
)

// Found: with ROOM/composite already published by someone else, the
// composite stayed "starting" with no lastError. Now the API says it is
// blocked and why, and it publishes once the other stream has ended.
func TestCompositeNameTaken(t *testing.T) {
	needFFmpeg(t)
	clip := makeClip(t, "red", 440)
	hub := relay.NewHub(relay.Params{KeyframeWait: -1, Grace: 200 * time.Millisecond})
	defer hub.Close()
	m := New(Params{Hub: hub, Frames: frames.New(frames.Params{}), Logger: quietLogger()})
	defer m.Close()
	stopSquatter := publishClip(t, hub, "r/composite", clip)
	publishClip(t, hub, "r/alice", clip)
	if _, _, err := m.Start("r", Options{Width: 320, Height: 180, FPS: 15}); err != nil {
		t.Fatal(err)
	}
	waitState := func(want string, within time.Duration) Info {
		t.Helper()
		var in Info
		for end := time.Now().Add(within); time.Now().Before(end); time.Sleep(50 * time.Millisecond) {
			if in, _ = m.Get("r"); in.State == want {
				return in
			}
		}
		t.Fatalf("composite state %q (lastError %q), want %q within %v", in.State, in.LastError, want, within)
		return in
	}
	in := waitState(StateBlocked, 20*time.Second)
	if !strings.Contains(in.LastError, "r/composite is published by someone else") {
		t.Errorf("lastError %q does not say the name is taken", in.LastError)
	}
	t.Logf("blocked: %s", in.LastError)
	stopSquatter()
	waitState(StateLive, 10*time.Second)
	if st, ok := hub.Get("r/composite"); !ok || !st.Live() {
		t.Fatal("the composite is live but r/composite is not published")
	}
}
