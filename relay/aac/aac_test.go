package aac

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/mpeg4audio"
	"go.uber.org/goleak"

	"github.com/livegate/livegate/internal/testenv"
	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/frames"
	"github.com/livegate/livegate/relay/frames/framestest"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestTwoReadersOneFFmpeg: two outputs of one stream share one transcoder;
// both get AAC-LC access units at 1024-sample steps, and the last Close
// stops ffmpeg.
func TestTwoReadersOneFFmpeg(t *testing.T) {
	testenv.Need(t, "ffmpeg")
	c, err := framestest.Load("../../testdata")
	if err != nil {
		t.Fatal(err)
	}
	hub := relay.NewHub(relay.Params{Workers: 1})
	defer hub.Close()
	_, stop, err := c.Start(hub, "room/cam")
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	st, _ := hub.Get("room/cam")
	var opus *relay.Track
	for _, tr := range st.Tracks() {
		if tr.Info().Kind == "audio" {
			opus = tr
		}
	}
	fl := frames.New(frames.Params{})
	reg := New(Params{Frames: fl})
	a, err := reg.Acquire(st, opus)
	if err != nil {
		t.Fatal(err)
	}
	b, err := reg.Acquire(st, opus)
	if err != nil {
		t.Fatal(err)
	}
	if n := reg.Started(); n != 1 {
		t.Fatalf("%d transcoders for one track, want 1", n)
	}
	wait, stop := context.WithTimeout(context.Background(), 10*time.Second)
	defer stop()
	cfg, err := a.Config(wait)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Type != mpeg4audio.ObjectTypeAACLC || cfg.SampleRate != SampleRate || cfg.ChannelCount != 2 {
		t.Fatalf("config %+v", cfg)
	}
	for _, r := range []*Reader{a, b} {
		var last time.Time
		for i := 0; i < 50; i++ {
			select {
			case f := <-r.Frames():
				if len(f.AU) == 0 || f.At.IsZero() {
					t.Fatalf("frame %d: %d bytes at %v", i, len(f.AU), f.At)
				}
				step := time.Duration(SamplesPerFrame) * time.Second / SampleRate
				if d := f.At.Sub(last); !last.IsZero() && (d-step).Abs() > time.Microsecond {
					t.Fatalf("frame %d %v after the previous", i, f.At.Sub(last))
				}
				last = f.At
			case <-wait.Done():
				t.Fatalf("reader got %d frames", i)
			}
		}
	}
	a.Close()
	select {
	case <-b.Done():
		t.Fatal("the transcoder stopped while a reader was left")
	default:
	}
	b.Close()
	select {
	case <-b.Done():
	default:
		t.Fatal("the transcoder runs after its last reader left")
	}
	if fl.Active() != 0 {
		t.Fatal("the transcoder's frame reader is still attached")
	}
	if _, err := New(Params{Frames: fl, FFmpeg: "-"}).Acquire(st, opus); !errors.Is(err, ErrNoFFmpeg) {
		t.Fatalf("without ffmpeg: %v", err)
	}
}
