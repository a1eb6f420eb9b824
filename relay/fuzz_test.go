package relay_test

import (
	"testing"

	"github.com/pion/rtp"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
)

// FuzzPublisherRTP: whatever a publisher sends as RTP, for every codec,
// the relay neither panics nor disturbs a healthy stream next to it.
func FuzzPublisherRTP(f *testing.F) {
	f.Add(byte(0), []byte{0x80, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 0x65, 1, 2, 3})
	f.Add(byte(1), []byte{0x80, 0x60, 0x00, 0x02, 0, 0, 0, 1, 0, 0, 0, 1, 0x90, 0x80, 0x00, 0x10})
	f.Add(byte(4), []byte{0x80, 0x6f, 0x00, 0x03, 0, 0, 0, 1, 0, 0, 0, 1, 0xfc})
	f.Add(byte(0), []byte{0x80, 0x60, 0x00, 0x01, 0, 0, 0, 1, 0, 0, 0, 1, 0x18, 0x00, 0x05, 0x67})
	mimes := []string{codec.MimeH264, codec.MimeVP8, codec.MimeVP9, codec.MimeAV1, codec.MimeOpus}
	hub := relay.NewHub(relay.Params{Workers: 2, KeyframeWait: -1, MaxQueueDelay: -1, Logger: quietLogger()})
	f.Cleanup(hub.Close)
	var pubs []*relay.Publication
	var sinks []*fakeSink
	for _, m := range mimes {
		info := relay.TrackInfo{Kind: codec.KindOf(m), Codec: relay.Codec{MimeType: m, ClockRate: 90000}}
		pub, err := hub.Publish("fuzz/"+m[6:], []relay.TrackInfo{info}, &fakeSource{})
		if err != nil {
			f.Fatal(err)
		}
		st, _ := hub.Get("fuzz/" + m[6:])
		sink := newSink()
		if _, err := st.AddReader(st.Tracks()[0], sink); err != nil {
			f.Fatal(err)
		}
		pubs, sinks = append(pubs, pub), append(sinks, sink)
	}
	healthy, _ := publish(f, hub, "fuzz/healthy", h264Info)
	hs, _ := hub.Get("fuzz/healthy")
	hsink := newSink()
	if _, err := hs.AddReader(hs.Tracks()[0], hsink); err != nil {
		f.Fatal(err)
	}
	snd := newVideoSender(healthy, 0, 1, 1)

	f.Fuzz(func(t *testing.T, which byte, data []byte) {
		var p rtp.Packet
		if p.Unmarshal(data) != nil {
			return
		}
		i := int(which) % len(pubs)
		pubs[i].WriteRTP(0, &p.Header, p.Payload)
		pubs[i].WriteSenderReport(0, 1, p.Timestamp)
		before := hsink.count()
		snd.key()
		waitFor(t, "the healthy stream's packet", func() bool { return hsink.count() > before })
	})
	_ = sinks
}
