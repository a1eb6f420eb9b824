package relay_test

import (
	"testing"
	"time"

	"github.com/livegate/livegate/relay"
)

// Reading a stream's stats changes nothing: however often (or seldom) the
// API, the metrics and the cluster heartbeat ask, they see the bitrates the
// hub measured over the last second, and those match what flowed.
func TestStatsBitratesAreReadOnly(t *testing.T) {
	h := newHub(t, relay.Params{})
	pub, _ := publish(t, h, "room/rate", h264Info)
	s := pub.Stream()
	sink := newSink()
	if _, err := s.AddReader(s.Tracks()[0], sink); err != nil {
		t.Fatal(err)
	}
	snd := newVideoSender(pub, 0, 1, 0)
	snd.key()
	send := func(d time.Duration) { // 100 packets a second
		start := time.Now()
		for i := 1; time.Since(start) < d; i++ {
			snd.delta()
			time.Sleep(time.Until(start.Add(time.Duration(i) * 10 * time.Millisecond)))
		}
	}

	// Nobody asked while media flowed, then it paused: the first reader
	// still gets the last second's rate (0), not an average since it began.
	send(2500 * time.Millisecond)
	time.Sleep(2100 * time.Millisecond)
	if st := s.Stats(); st.BitrateIn != 0 || st.BitrateOut != 0 {
		t.Fatalf("2 s after the last packet: bitrates in %.0f, out %.0f bit/s; want 0", st.BitrateIn, st.BitrateOut)
	}

	send(2500 * time.Millisecond)
	first := s.Stats()
	for range 5 {
		if st := s.Stats(); st.BitrateIn != first.BitrateIn || st.BitrateOut != first.BitrateOut {
			t.Fatalf("bitrates moved between two reads: %v/%v then %v/%v",
				first.BitrateIn, first.BitrateOut, st.BitrateIn, st.BitrateOut)
		}
	}
	tr := first.Tracks[0]
	want := 100 * 8 * float64(tr.BytesIn) / float64(tr.PacketsIn)
	if first.BitrateIn < want*0.7 || first.BitrateIn > want*1.3 || first.BitrateOut < want*0.7 || first.BitrateOut > want*1.3 {
		t.Fatalf("bitrates in %.0f, out %.0f bit/s; want about %.0f", first.BitrateIn, first.BitrateOut, want)
	}
}
