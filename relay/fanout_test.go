package relay_test

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/livegate/livegate/relay"
)

// Three viewers on one video track see the same packets, in order, from the
// first keyframe on, each with its own gap-free numbering.
func TestFanOutDeliversEveryPacketInOrder(t *testing.T) {
	h := newHub(t, relay.Params{Workers: 2})
	pub, _ := publish(t, h, "room/cam", h264Info)
	s, ok := h.Get("room/cam")
	if !ok {
		t.Fatal("published stream not found")
	}
	var sinks []*fakeSink
	for range 3 {
		_, sink := addReader(t, s, 0)
		sinks = append(sinks, sink)
	}

	// Start close to the wrap of both sequence numbers and timestamps.
	snd := newVideoSender(pub, 0, 65530, 0xffffd000)
	for range 3 {
		snd.delta() // before any keyframe: nobody can decode these
	}
	var want [][]byte
	for range 4 {
		want = append(want, snd.gop(9)...)
	}

	for i, sink := range sinks {
		who := fmt.Sprintf("reader %d", i)
		got := sink.waitCount(t, len(want))
		assertPayloads(t, who, got, want)
		assertContiguous(t, who, got)
		for j, p := range got {
			if p.Header.Timestamp-got[0].Header.Timestamp != uint32(j)*3000 {
				t.Fatalf("%s: packet %d timestamp %d, first %d: frame spacing not kept", who, j, p.Header.Timestamp, got[0].Header.Timestamp)
			}
			if p.Header.Extension || len(p.Header.Extensions) != 0 {
				t.Fatalf("%s: publisher's header extensions leaked to reader: %+v", who, p.Header)
			}
			if !p.Header.Marker || p.Header.PayloadType != 96 || p.Header.Version != 2 {
				t.Fatalf("%s: header not carried over: %+v", who, p.Header)
			}
		}
	}
}

// Packets of a frame that share a timestamp are one access unit: a reader
// starts at its first packet (the STAP-A with SPS/PPS), not at the IDR
// fragment that follows it.
func TestReaderStartsAtFirstPacketOfKeyframeAccessUnit(t *testing.T) {
	_, pub, _, s := newStream(t, relay.Params{Workers: 1}, "room/cam", h264Info)
	_, early := addReader(t, s, 0)

	snd := newVideoSender(pub, 0, 100, 1000)
	snd.delta()
	au := [][]byte{
		{0x78, 0x00, 0x03, 0x67, 0x42, 0xc0, 0x00, 0x02, 0x68, 0xce}, // STAP-A SPS+PPS
		{0x7c, 0x85, 0x01, 0x02},                                     // FU-A start of IDR
		{0x7c, 0x05, 0x03, 0x04},                                     // FU-A continuation
		{0x7c, 0x45, 0x05, 0x06},                                     // FU-A end
	}
	snd.frame(au...)
	d1 := snd.delta()
	// A second IDR fragment start in the same access unit as a later
	// keyframe must not restart the GOP cache in the middle of it.
	au2 := [][]byte{
		{0x7c, 0x85, 0x11}, // first slice of the IDR
		{0x7c, 0x45, 0x12},
		{0x7c, 0x85, 0x13}, // second slice of the same IDR picture
		{0x7c, 0x45, 0x14},
	}
	snd.frame(au2...)
	d2 := snd.delta()

	want := append(append(append(append([][]byte{}, au...), d1), au2...), d2)
	got := early.waitCount(t, len(want))
	assertPayloads(t, "early reader", got, want)
	assertContiguous(t, "early reader", got)

	// A late reader gets the cached GOP, which begins at the whole access
	// unit of the last keyframe.
	_, late := addReader(t, s, 0)
	got = late.waitCount(t, len(au2)+1)
	assertPayloads(t, "late reader", got, append(append([][]byte{}, au2...), d2))
	assertContiguous(t, "late reader", got)
}

// frame sends several packets of one frame (same timestamp, marker on the
// last).
func (s *sender) frame(payloads ...[]byte) {
	ts := s.ts
	for i, p := range payloads {
		s.ts = ts
		step := s.tsStep
		if i < len(payloads)-1 {
			s.tsStep = 0
		}
		s.send(p)
		s.tsStep = step
	}
}

// A viewer joining in the middle of a GOP gets the frames since the last
// keyframe at once, then the live ones, with no gap or duplicate, and the
// publisher is not bothered for a keyframe.
func TestGOPCacheServesLateReader(t *testing.T) {
	_, pub, src, s := newStream(t, relay.Params{Workers: 2}, "room/cam", h264Info)
	snd := newVideoSender(pub, 0, 5000, 90000)
	snd.gop(7)           // an older GOP, not to be replayed
	cached := snd.gop(5) // keyframe + 5 deltas

	_, sink := addReader(t, s, 0)
	got := sink.waitCount(t, len(cached)) // without any new packet
	assertPayloads(t, "late reader", got, cached)

	var live [][]byte
	for range 5 {
		live = append(live, snd.delta())
	}
	live = append(live, snd.gop(3)...)
	want := append(append([][]byte{}, cached...), live...)
	got = sink.waitCount(t, len(want))
	assertPayloads(t, "late reader", got, want)
	assertContiguous(t, "late reader", got)
	if r := src.requests(); len(r) != 0 {
		t.Errorf("publisher asked for keyframes %v though the reader was served from the cache", r)
	}
}

// Readers joining at random moments while the publisher is sending each
// start at a keyframe and then get every later packet exactly once.
func TestReadersJoiningDuringPublishing(t *testing.T) {
	// A burst far faster than real time: ordering is tested, not overload.
	_, pub, _, s := newStream(t, relay.Params{Workers: 3, MaxQueueDelay: -1, WorkerQueue: 4096}, "room/cam", h264Info)
	snd := newVideoSender(pub, 0, 1, 1)

	const total = 3000
	sent := make([][]byte, 0, total)
	var mu sync.Mutex
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range total {
			var p []byte
			if i%25 == 0 {
				p = snd.key()
			} else {
				p = snd.delta()
			}
			mu.Lock()
			sent = append(sent, p)
			mu.Unlock()
		}
	}()

	var sinks []*fakeSink
	for range 12 {
		_, sink := addReader(t, s, 0)
		sinks = append(sinks, sink)
		for range rand.IntN(200) {
			mu.Lock()
			n := len(sent)
			mu.Unlock()
			if n == total {
				break
			}
		}
	}
	<-done

	index := make(map[string]int, total)
	for i, p := range sent {
		index[string(p)] = i
	}
	for i, sink := range sinks {
		who := fmt.Sprintf("reader %d", i)
		var got []recPkt
		// Every reader joined before the last keyframe, so it ends with
		// the last packet.
		waitFor(t, who+" to reach the last packet", func() bool {
			got = sink.packets()
			return len(got) > 0 && string(got[len(got)-1].Payload) == string(sent[total-1])
		})
		first, ok := index[string(got[0].Payload)]
		if !ok || first%25 != 0 {
			t.Fatalf("%s: first packet is %s, not a keyframe", who, ids(payloadsOf(got[:1])))
		}
		assertPayloads(t, who, got, sent[first:])
		assertContiguous(t, who, got)
	}
}

// Without a GOP cache, or with a GOP longer than it, a late video reader
// waits for the next keyframe, which is asked of the publisher at once.
func TestLateReaderWithoutCacheWaitsForRequestedKeyframe(t *testing.T) {
	for _, tc := range []struct {
		name   string
		params relay.Params
		deltas int
	}{
		{"cache disabled", relay.Params{GOPCachePackets: -1}, 3},
		{"GOP longer than cache", relay.Params{GOPCachePackets: 4}, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHub(t, tc.params)
			pub, src := publish(t, h, "room/cam", opusInfo, h264Info)
			s, _ := h.Get("room/cam")
			snd := newVideoSender(pub, 1, 10, 10)
			snd.gop(tc.deltas)

			_, sink := addReader(t, s, 1)
			if r := src.requests(); len(r) != 1 || r[0] != 1 {
				t.Fatalf("publisher keyframe requests = %v, want [1] (its video track)", r)
			}
			snd.delta()
			snd.delta()
			want := snd.gop(2)
			got := sink.waitCount(t, len(want))
			assertPayloads(t, "late reader", got, want)
			assertContiguous(t, "late reader", got)
		})
	}
}

// Audio needs no keyframe: a late listener starts with the next packet and
// the publisher is not asked for anything.
func TestLateAudioReaderStartsAtNextPacket(t *testing.T) {
	_, pub, src, s := newStream(t, relay.Params{}, "room/mic", opusInfo)
	snd := newAudioSender(pub, 0, 7, 7)
	for range 5 {
		snd.key()
	}
	_, sink := addReader(t, s, 0)
	var want [][]byte
	for range 10 {
		want = append(want, snd.key())
	}
	got := sink.waitCount(t, len(want))
	assertPayloads(t, "audio reader", got, want)
	assertContiguous(t, "audio reader", got)
	if r := src.requests(); len(r) != 0 {
		t.Errorf("publisher keyframe requests = %v for an audio reader", r)
	}
}

// A closed reader gets nothing more, and the others are unaffected.
func TestClosedReaderGetsNothingMore(t *testing.T) {
	_, pub, _, s := newStream(t, relay.Params{Workers: 1}, "room/cam", h264Info)
	r1, s1 := addReader(t, s, 0)
	_, s2 := addReader(t, s, 0)
	snd := newVideoSender(pub, 0, 1, 1)
	first := snd.gop(2)
	s1.waitCount(t, len(first))
	r1.Close()
	r1.Close() // idempotent
	rest := snd.gop(4)
	s2.waitCount(t, len(first)+len(rest))
	if n := s1.count(); n != len(first) {
		t.Fatalf("closed reader got %d packets, want %d", n, len(first))
	}
	if st := s.Stats(); st.Tracks[0].Readers != 1 {
		t.Errorf("track readers = %d after one of two closed", st.Tracks[0].Readers)
	}
}

// Some H.264 publishers send an access unit delimiter or SEI as its own
// packet before the SPS/PPS/IDR of a keyframe. Viewers must still start
// at that keyframe (its SPS), not wait forever.
func TestReaderStartsAtKeyframeAfterLeadingSEI(t *testing.T) {
	for _, lead := range []struct {
		name string
		nal  []byte
	}{
		{"SEI", []byte{0x06, 0x05, 0x10, 0x80}},
		{"AUD", []byte{0x09, 0xf0}},
	} {
		t.Run(lead.name, func(t *testing.T) {
			h := newHub(t, relay.Params{Workers: 1})
			pub, _ := publish(t, h, "room/cam", h264Info)
			s, _ := h.Get("room/cam")
			_, early := addReader(t, s, 0)
			snd := newVideoSender(pub, 0, 100, 1000)
			keyAU := func() [][]byte {
				au := [][]byte{
					append([]byte(nil), lead.nal...),
					{0x67, 0x42, 0xc0, 0x1f}, // SPS
					{0x68, 0xce, 0x3c, 0x80}, // PPS
					payload(true, false),     // IDR
					{0x65, 0x88, 0x84, 0x21}, // second IDR slice, same picture
				}
				snd.frame(au...)
				return au[1:]
			}
			delta := func() [][]byte {
				au := [][]byte{append([]byte(nil), lead.nal...), payload(false, false)}
				snd.frame(au...)
				return au
			}

			delta()
			want := keyAU()
			want = append(want, delta()...)
			want = append(want, delta()...)
			got := early.waitCount(t, len(want))
			assertPayloads(t, "early reader", got, want)
			assertContiguous(t, "early reader", got)

			// The GOP cache starts at the same packet.
			_, late := addReader(t, s, 0)
			got = late.waitCount(t, len(want))
			assertPayloads(t, "late reader", got, want)
		})
	}
}

// VP9 with spatial layers: the first packet of an upper layer has B set and
// P clear in every superframe, but only a superframe whose first packet is a
// keyframe is one.
func TestVP9UpperLayerIsNotAKeyframe(t *testing.T) {
	_, pub, _, s := newStream(t, relay.Params{Workers: 1}, "room/cam", vp9Info)
	_, sink := addReader(t, s, 0)
	snd := newVideoSender(pub, 0, 100, 1000)
	snd.frame([]byte{0x4c, 0x01}, []byte{0x0c, 0x02}) // layer 0 predicted, layer 1 B+!P
	key := [][]byte{{0x0c, 0x03}, {0x0c, 0x04}}       // keyframe: both layers B+!P
	snd.frame(key...)
	want := append(key, []byte{0x4c, 0x05}, []byte{0x0c, 0x06})
	snd.frame(want[2:]...)
	got := sink.waitCount(t, len(want))
	assertPayloads(t, "reader", got, want)
}

// A packet under a number the track already forwarded is dropped: a
// reader would seal it under an SRTP index it used, which for a viewer
// with transport-cc is an AES-GCM IV used twice over different data.
func TestDuplicateSequenceNumberDropped(t *testing.T) {
	hub := newHub(t, relay.Params{Workers: 1, KeyframeWait: -1})
	pub, err := hub.Publish("live/cam", []relay.TrackInfo{h264Info}, &fakeSource{})
	if err != nil {
		t.Fatal(err)
	}
	st, _ := hub.Get("live/cam")
	_, sink := addReader(t, st, 0)
	s := newVideoSender(pub, 0, 100, 0)
	s.key()
	s.delta()
	s.seq-- // the same number again, other bytes
	s.delta()
	s.delta() // 102
	got := sink.waitCount(t, 3)
	for i, p := range got {
		if p.Header.SequenceNumber != got[0].Header.SequenceNumber+uint16(i) {
			t.Fatalf("packet %d: sequence %d, want each number once in order", i, p.Header.SequenceNumber)
		}
	}
}
