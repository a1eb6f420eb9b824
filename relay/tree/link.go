package tree

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/pion/rtcp"
	"github.com/pion/rtp"
	"github.com/pion/sdp/v3"
	"github.com/pion/webrtc/v4"

	"github.com/livegate/livegate/relay"
	"github.com/livegate/livegate/relay/codec"
	"github.com/livegate/livegate/relay/rtcclient"
)

// link is one WHEP session to a parent, feeding one local publication.
type link struct {
	parent string
	pc     *webrtc.PeerConnection
	sess   *rtcclient.Session // set under mu once the exchange succeeded
	infos  []relay.TrackInfo
	mids   []string // mid of each track, in infos order

	mu      sync.Mutex
	recv    map[int]*webrtc.RTPReceiver // by track index, once media arrives
	pub     *relay.Publication
	pending []pendingTrack // arrived before the publication existed
	done    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

// dial opens a WHEP session for path on parent and learns its tracks from
// the answer, so the local stream exists before the first packet.
type pendingTrack struct {
	tr   *webrtc.TrackRemote
	recv *webrtc.RTPReceiver
}

func dial(ctx context.Context, parent, path string, opts rtcclient.Options) (*link, error) {
	l := &link{parent: parent, recv: map[int]*webrtc.RTPReceiver{}, done: make(chan struct{})}
	url := strings.TrimRight(parent, "/") + "/whep/" + path
	sess, err := rtcclient.Connect(ctx, url, opts, func(pc *webrtc.PeerConnection) error {
		l.pc = pc
		for _, k := range []webrtc.RTPCodecType{webrtc.RTPCodecTypeVideo, webrtc.RTPCodecTypeAudio} {
			if _, err := pc.AddTransceiverFromKind(k, webrtc.RTPTransceiverInit{Direction: webrtc.RTPTransceiverDirectionRecvonly}); err != nil {
				return err
			}
		}
		// Registered before the answer is applied: media (the parent's
		// cached GOP) may arrive right after.
		pc.OnTrack(l.onTrack)
		pc.OnConnectionStateChange(func(s webrtc.PeerConnectionState) {
			switch s {
			case webrtc.PeerConnectionStateFailed, webrtc.PeerConnectionStateClosed, webrtc.PeerConnectionStateDisconnected:
				go l.close()
			}
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.sess = sess
	l.mu.Unlock()
	if err := l.parseAnswer(sess.PC.RemoteDescription().SDP); err != nil {
		_ = sess.PC.Close()
		return nil, err
	}
	return l, nil
}

// parseAnswer takes the codec of every accepted media section.
func (l *link) parseAnswer(answer string) error {
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return fmt.Errorf("parent's answer: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		if md.MediaName.Port.Value == 0 || len(md.MediaName.Formats) == 0 {
			continue
		}
		kind := codec.Kind(md.MediaName.Media)
		if kind != codec.Audio && kind != codec.Video {
			continue
		}
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		c, ok := codecOf(md, md.MediaName.Formats[0])
		if !ok || !codec.Supported(c.MimeType) {
			continue
		}
		l.infos = append(l.infos, relay.TrackInfo{Kind: kind, Codec: c})
		l.mids = append(l.mids, mid)
	}
	if len(l.infos) == 0 {
		return fmt.Errorf("parent's answer has no usable track")
	}
	return nil
}

func codecOf(md *sdp.MediaDescription, pt string) (relay.Codec, bool) {
	var c relay.Codec
	found := false
	for _, a := range md.Attributes {
		v, ok := strings.CutPrefix(a.Value, pt+" ")
		if !ok {
			continue
		}
		switch a.Key {
		case "rtpmap":
			parts := strings.Split(v, "/")
			if len(parts) < 2 {
				return c, false
			}
			var rate, ch uint64
			fmt.Sscan(parts[1], &rate)
			if len(parts) > 2 {
				fmt.Sscan(parts[2], &ch)
			}
			c.MimeType, c.ClockRate, c.Channels = md.MediaName.Media+"/"+parts[0], uint32(rate), uint16(ch)
			found = true
		case "fmtp":
			c.Fmtp = v
		}
	}
	return c, found
}

func (l *link) onTrack(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.pub == nil {
		l.pending = append(l.pending, pendingTrack{tr, recv})
		return
	}
	l.forwardLocked(tr, recv)
}

// forwardLocked copies one remote track into the publication. Caller holds l.mu.
func (l *link) forwardLocked(tr *webrtc.TrackRemote, recv *webrtc.RTPReceiver) {
	idx := -1
	for _, t := range l.pc.GetTransceivers() {
		if t.Receiver() == recv {
			for i, mid := range l.mids {
				if mid == t.Mid() {
					idx = i
				}
			}
		}
	}
	if idx < 0 {
		return
	}
	l.recv[idx] = recv
	pub := l.pub
	l.wg.Add(2)
	go func() {
		defer l.wg.Done()
		for {
			buf := make([]byte, 1500) // kept by the relay
			n, _, err := tr.Read(buf)
			if err != nil {
				return
			}
			var p rtp.Packet
			if p.Unmarshal(buf[:n]) == nil {
				pub.WriteRTP(idx, &p.Header, p.Payload)
			}
		}
	}()
	go func() {
		defer l.wg.Done()
		for {
			pkts, _, err := recv.ReadRTCP()
			if err != nil {
				return
			}
			for _, p := range pkts {
				if sr, ok := p.(*rtcp.SenderReport); ok {
					pub.WriteSenderReport(idx, sr.NTPTime, sr.RTPTime)
				}
			}
		}
	}()
}

// run forwards media into pub until the link breaks or ctx ends.
func (l *link) run(ctx context.Context, pub *relay.Publication) {
	l.mu.Lock()
	l.pub = pub
	for _, p := range l.pending {
		l.forwardLocked(p.tr, p.recv)
	}
	l.pending = nil
	l.mu.Unlock()
	select {
	case <-ctx.Done():
	case <-l.done:
	case <-pub.Superseded():
	}
	l.close()
}

// RequestKeyframe forwards a coalesced keyframe request to the parent.
func (l *link) RequestKeyframe(i int) {
	l.mu.Lock()
	recv := l.recv[i]
	l.mu.Unlock()
	if recv == nil || recv.Track() == nil {
		return
	}
	_ = l.pc.WriteRTCP([]rtcp.Packet{&rtcp.PictureLossIndication{MediaSSRC: uint32(recv.Track().SSRC())}})
}

func (l *link) close() {
	l.once.Do(func() {
		close(l.done)
		l.mu.Lock()
		sess := l.sess
		l.mu.Unlock()
		if sess == nil {
			_ = l.pc.Close()
			return
		}
		// DELETE tells the parent at once that its reader is gone.
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = sess.Close(ctx)
	})
}

func (l *link) wait() { l.wg.Wait() }
