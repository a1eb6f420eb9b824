package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// Found: a stream with two tracks of one kind (a publisher may offer two
// video sections) made the collector emit the same series twice, and the
// registry then refused the whole scrape with 500: one publisher could
// blind the monitoring of the gateway.
func TestTwoTracksOfOneKindKeepMetricsUp(t *testing.T) {
	hop := 12.0
	video := func(bytes uint64) relay.TrackStats {
		return relay.TrackStats{TrackInfo: relay.TrackInfo{Kind: codec.Video}, BytesIn: bytes, PacketsIn: 1,
			Delay:  &relay.DelayStats{Samples: 1, SumSeconds: 0.01, Buckets: make([]uint64, len(relay.DelayBuckets)+1), HopMs: &hop},
			Layers: []relay.LayerStats{{LayerInfo: relay.LayerInfo{RID: "h", Width: 640, Height: 360}}}}
	}
	m := New(Source{Streams: func() []relay.StreamStats {
		return []relay.StreamStats{{Path: "r/cam", Live: true, Tracks: []relay.TrackStats{video(100), video(50)}}}
	}})
	rec := httptest.NewRecorder()
	m.Handler().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body, _ := io.ReadAll(rec.Body)
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: %d\n%s", rec.Code, body)
	}
	if !strings.Contains(string(body), `livegate_stream_bytes_in_total{kind="video",stream="r/cam"} 150`) {
		t.Fatalf("bytes of both video tracks not summed:\n%s", grep(string(body), "bytes_in"))
	}
	if !strings.Contains(string(body), `livegate_stream_delay_seconds_count{kind="video",stream="r/cam"} 2`) {
		t.Fatalf("delay samples of both video tracks not summed:\n%s", grep(string(body), "delay_seconds_count"))
	}
}

func grep(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
