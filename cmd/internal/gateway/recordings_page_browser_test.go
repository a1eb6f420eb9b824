package gateway

import (
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
	g.playing(t, "rec/page")
	id := g.recordFinished(t, "rec/page", "")

	tab, _ := b.tab(t, "recordings")
	b.navigate(t, tab, g.base+"/recordings")
	row := waitPage(t, tab, 10*time.Second, "the recording's row",
		`[...document.querySelectorAll('#list tr')].map(r => r.textContent + '|' + (r.querySelector('a')?.getAttribute('href') || '')).join('\n')`,
		func(s string) (bool, error) { return strings.Contains(s, "rec/page"), nil })
	if !strings.Contains(row, "complete") || !strings.Contains(row, "/recordings/"+id+"/index.m3u8") {
		t.Fatalf("recordings page rows:\n%s", row)
	}
}

// recordFinished records the live stream for about 3 s through the API
// (adminKey "" on a gateway without auth) and returns the recording's id
// once it is complete.
func (g *testGateway) recordFinished(t *testing.T, stream, adminKey string) string {
	t.Helper()
	status, body, _ := apiCall(t, http.MethodPost, g.base+"/api/v1/recordings", adminKey, `{"stream":"`+stream+`"}`)
	if status != http.StatusCreated {
		t.Fatalf("start recording: %d %v", status, body)
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
	return id
}
