// Package rtcclienttest is the WHEP viewer of livegate's tests: it plays a
// stream with rtcclient, reassembles H.264 access units from the RTP
// packets (noting any that lost a packet), and keeps the audio payloads,
// so a test asserts what a viewer notices: whole frames, keyframes,
// decodable pictures, audio that keeps coming. Its Assembler also serves
// tests that read RTP from the relay directly.
package rtcclienttest

import (
	"bytes"
	"context"
	"sync"
	"time"

	"github.com/pion/rtp"
	"github.com/pion/rtp/codecs"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtcclient"
)

// Frame is one H.264 access unit as a viewer reassembled it.
type Frame struct {
	NALUs [][]byte
	// Key: it holds an IDR picture.
	Key bool
	// Complete: no packet of it was lost (a sequence gap inside or just
	// before it, or a payload that did not parse).
	Complete bool
	// At is when its last packet arrived.
	At time.Time
}

// Assembler turns the RTP packets of one H.264 stream, in arrival order,
// into access units; the marker bit ends one. Used by one goroutine.
type Assembler struct {
	depack codecs.H264Packet
	seq    codec.SeqTracker
	cur    Frame
	ts     uint32
	have   bool
}

// Push takes one packet and returns the access unit it completes, if any.
func (a *Assembler) Push(h *rtp.Header, payload []byte) (Frame, bool) {
	gap := a.seq.Gap(h.SequenceNumber)
	if !a.have || h.Timestamp != a.ts {
		a.cur, a.ts = Frame{Complete: !gap}, h.Timestamp
	} else if gap {
		a.cur.Complete = false
	}
	a.have = true
	annexB, err := a.depack.Unmarshal(payload)
	if err != nil {
		a.cur.Complete = false
		return Frame{}, false
	}
	for _, n := range SplitAnnexB(annexB) {
		if len(n) > 0 && n[0]&0x1f == 5 {
			a.cur.Key = true
		}
		a.cur.NALUs = append(a.cur.NALUs, n)
	}
	if !h.Marker {
		return Frame{}, false
	}
	f := a.cur
	f.At = time.Now()
	a.cur = Frame{Complete: true}
	return f, true
}

// SplitAnnexB returns the NAL units of an Annex-B buffer.
func SplitAnnexB(b []byte) [][]byte {
	var out [][]byte
	for len(b) > 0 {
		i := bytes.Index(b, []byte{0, 0, 1})
		if i < 0 {
			break
		}
		b = b[i+3:]
		j := bytes.Index(b, []byte{0, 0, 1})
		if j < 0 {
			out = append(out, b)
			break
		}
		n := b[:j]
		if len(n) > 0 && n[len(n)-1] == 0 { // 4-byte start code
			n = n[:len(n)-1]
		}
		out = append(out, n)
		b = b[j:]
	}
	return out
}

// Viewer is a WHEP session receiving one video and one audio track.
type Viewer struct {
	*rtcclient.Session

	mu       sync.Mutex
	frames   []Frame
	audio    [][]byte
	videoPkt []rtp.Header

	pauseMu sync.Mutex
	paused  chan struct{} // while non-nil, the video reader does not read

	wg sync.WaitGroup
}

// Dial plays endpoint (a WHEP URL) with recvonly video and audio.
func Dial(ctx context.Context, endpoint string, opts rtcclient.Options) (*Viewer, error) {
	v := &Viewer{}
	s, err := rtcclient.Play(ctx, endpoint, opts, func(pc *webrtc.PeerConnection) error {
		pc.OnTrack(func(tr *webrtc.TrackRemote, _ *webrtc.RTPReceiver) {
			v.wg.Add(1)
			go func() {
				defer v.wg.Done()
				if tr.Kind() == webrtc.RTPCodecTypeVideo {
					v.readVideo(tr)
				} else {
					v.readAudio(tr)
				}
			}()
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	v.Session = s
	return v, nil
}

// Close ends the session (DELETE, then the PeerConnection) and waits for
// the track readers.
func (v *Viewer) Close(ctx context.Context) error {
	err := v.Session.Close(ctx)
	v.wg.Wait()
	return err
}

// Pause stops reading video until resume is called, as a viewer whose
// network or decoder stalls; the transport's buffers then fill up.
func (v *Viewer) Pause() (resume func()) {
	gate := make(chan struct{})
	v.pauseMu.Lock()
	v.paused = gate
	v.pauseMu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			v.pauseMu.Lock()
			v.paused = nil
			v.pauseMu.Unlock()
			close(gate)
		})
	}
}

func (v *Viewer) readVideo(tr *webrtc.TrackRemote) {
	var a Assembler
	for {
		v.pauseMu.Lock()
		p := v.paused
		v.pauseMu.Unlock()
		if p != nil {
			<-p
		}
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		v.mu.Lock()
		v.videoPkt = append(v.videoPkt, pkt.Header)
		v.mu.Unlock()
		if f, ok := a.Push(&pkt.Header, pkt.Payload); ok {
			v.mu.Lock()
			v.frames = append(v.frames, f)
			v.mu.Unlock()
		}
	}
}

func (v *Viewer) readAudio(tr *webrtc.TrackRemote) {
	for {
		pkt, _, err := tr.ReadRTP()
		if err != nil {
			return
		}
		v.mu.Lock()
		v.audio = append(v.audio, pkt.Payload)
		v.mu.Unlock()
	}
}

// Snapshot returns copies of what arrived so far: the access units
// (complete or not), the audio payloads and every video packet's header.
func (v *Viewer) Snapshot() (frames []Frame, audio [][]byte, video []rtp.Header) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return append([]Frame(nil), v.frames...), append([][]byte(nil), v.audio...), append([]rtp.Header(nil), v.videoPkt...)
}
