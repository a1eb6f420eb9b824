package gateway

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/livegate/livegate/recorder"
)

// The /recordings page (a static page with its own script, under the same
// CSP as the others) lists a finished recording in Chromium and plays it
// from its VOD playlist link.
func TestRecordingsPageListsRecording(t *testing.T) {
	b := browserTest(t, 90*time.Second)
	if b == nil {
		return
	}
	g := startGateway(t, func(c *Config) { c.RecorderParams.SegmentDuration = time.Second })
	c := loadClip(t)
	pub := g.publish(t, "rec/page")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go play(ctx, pub, c, 0)
	resp, body := post(t, g.base+"/api/v1/recordings", "application/json", `{"stream":"rec/page"}`)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("start recording: %d %v", resp.StatusCode, body)
	}
	id, _ := body["id"].(string)
	time.Sleep(3 * time.Second)
	if _, err := g.rec.Stop(id); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "the recording complete", func() bool {
		in, err := g.rec.Get(id)
		return err == nil && in.Status == recorder.StatusComplete
	})

	tab, _ := b.tab(t, "recordings")
	b.navigate(t, tab, g.base+"/recordings")
	row := waitPage(t, tab, 10*time.Second, "the recording's row",
		`[...document.querySelectorAll('#list tr')].map(r => r.textContent + '|' + (r.querySelector('a')?.getAttribute('href') || '')).join('\n')`,
		func(s string) (bool, error) { return strings.Contains(s, "rec/page"), nil })
	if !strings.Contains(row, "complete") || !strings.Contains(row, "/recordings/"+id+"/index.m3u8") {
		t.Fatalf("recordings page rows:\n%s", row)
	}
}
