package gateway

import (
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestSimulcastHLSLadder: the HLS multivariant playlist of a simulcast
// stream lists every layer as a variant (top first, each with its picture
// size), and each variant's media playlist names an init section and
// segments that decode to that layer's size (no transcoding).
func TestSimulcastHLSLadder(t *testing.T) {
	needProgram(t, "ffprobe")
	g := startGateway(t, func(c *Config) { c.HLS = true })
	playSimulcast(t, g, "sim/hls")
	waitFor(t, 10*time.Second, "three layers", func() bool { return len(streamLayers(t, g, "sim/hls")) == 3 })

	get := func(file string) []byte {
		t.Helper()
		resp, err := httpClient.Get(g.base + "/hls/sim/hls/" + file)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("GET %s: %s %s", file, resp.Status, b)
		}
		return b
	}
	master := string(get("index.m3u8"))
	t.Logf("index.m3u8:\n%s", master)
	inf := regexp.MustCompile(`#EXT-X-STREAM-INF:[^\n]*RESOLUTION=(\d+x\d+)[^\n]*\n([^\n]+)`)
	variants := inf.FindAllStringSubmatch(master, -1)
	var sizes []string
	for _, v := range variants {
		sizes = append(sizes, v[1])
	}
	if got := strings.Join(sizes, ","); got != "640x360,320x180,160x90" {
		t.Fatalf("variants %s, want 640x360,320x180,160x90 (top first)", got)
	}
	mapURI := regexp.MustCompile(`#EXT-X-MAP:URI="([^"]+)"`)
	segURI := regexp.MustCompile(`#EXTINF:[0-9.]+,[^\n]*\n([^#\n][^\n]*)`)
	dir := t.TempDir()
	for _, v := range variants {
		size, uri := v[1], strings.SplitN(v[2], "?", 2)[0]
		var pl string
		var s []string
		waitFor(t, 15*time.Second, "a segment in "+uri, func() bool {
			pl = string(get(uri))
			for _, x := range segURI.FindAllStringSubmatch(pl, -1) {
				if !strings.Contains(x[1], "gap.mp4") {
					s = x
					return true
				}
			}
			return false
		})
		m := mapURI.FindStringSubmatch(pl)
		if m == nil {
			t.Fatalf("%s names no init section:\n%s", uri, pl)
		}
		file := filepath.Join(dir, size+".mp4")
		data := append(get(strings.SplitN(m[1], "?", 2)[0]), get(strings.SplitN(s[1], "?", 2)[0])...)
		if err := os.WriteFile(file, data, 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command("ffprobe", "-v", "error", "-select_streams", "v:0", "-show_entries", "stream=width,height",
			"-of", "csv=p=0:s=x", file).CombinedOutput()
		if err != nil {
			t.Fatalf("ffprobe %s: %v %s", uri, err, out)
		}
		if got := strings.TrimSpace(string(out)); got != size {
			t.Fatalf("variant %s (%s) decodes to %s", size, uri, got)
		}
		t.Logf("variant %s: %s, init %s, segment %s decode to %s", size, uri, m[1], s[1], size)
	}
}
