package rtsp

import (
	"errors"
	"sync"
	"time"

	"github.com/bluenviron/gortsplib/v5"
	"github.com/bluenviron/gortsplib/v5/pkg/description"
	"github.com/bluenviron/gortsplib/v5/pkg/format"
	"github.com/pion/rtp"

	"github.com/livegate/livegate/ingest/internal/mediain"
	"github.com/livegate/livegate/relay"
)

// publisher is one RTSP publisher (ANNOUNCE/RECORD) of a relay path.
type publisher struct {
	s     *Server
	path  string
	owner string // who publishes, for a takeover (see mediain.Authorizer)
	vmed  *description.Media
	vfmt  *format.H264
	amed  *description.Media
	aac   *format.MPEG4Audio
	opus  *format.Opus
	infos []relay.TrackInfo

	mu   sync.Mutex
	pub  *relay.Publication
	tc   *mediain.AACToOpus
	stop chan struct{}
}

// newPublisher picks the tracks livegate takes from an announced session:
// one H.264 and one AAC or Opus.
func (s *Server) newPublisher(path, owner string, desc *description.Session) (*publisher, error) {
	p := &publisher{s: s, path: path, owner: owner, stop: make(chan struct{})}
	for _, m := range desc.Medias {
		for _, f := range m.Formats {
			switch f := f.(type) {
			case *format.H264:
				if p.vfmt == nil {
					p.vmed, p.vfmt = m, f
				}
			case *format.MPEG4Audio:
				if p.amed == nil && s.ffmpeg != "" {
					p.amed, p.aac = m, f
				}
			case *format.Opus:
				if p.amed == nil || p.aac != nil {
					p.amed, p.opus, p.aac = m, f, nil
				}
			}
		}
	}
	if p.vfmt == nil {
		return nil, errors.New("no H.264 track: livegate takes H.264 over RTSP")
	}
	if p.amed == nil {
		for _, m := range desc.Medias {
			if m.Type == description.MediaTypeAudio {
				s.log.Warn("rtsp publisher's audio cannot be used (AAC needs ffmpeg; or an unsupported codec): video only",
					"stream", path, "codec", m.Formats[0].Codec())
				break
			}
		}
	}
	sps, pps := p.vfmt.SafeParams()
	p.infos = []relay.TrackInfo{mediain.H264Info(sps, pps)}
	if p.amed != nil {
		p.infos = append(p.infos, mediain.OpusInfo())
	}
	return p, nil
}

// start publishes into the hub and routes the session's packets.
func (p *publisher) start(ss *gortsplib.ServerSession) error {
	dec, err := p.vfmt.CreateDecoder()
	if err != nil {
		return err
	}
	pub, err := p.s.p.Hub.PublishAs(p.owner, p.path, p.infos, mediain.NopSource{})
	if err != nil {
		return err
	}
	p.mu.Lock()
	p.pub = pub
	p.mu.Unlock()
	go func() {
		select {
		case <-pub.Superseded():
			ss.Close()
		case <-p.stop:
		}
	}()
	p.s.log.Info("rtsp publisher live", "stream", p.path, "audio", p.amed != nil, "transcode", p.aac != nil)

	var srs mediain.SenderReports
	sps, pps := p.vfmt.SafeParams()
	h := mediain.NewH264(sps, pps)
	ss.OnPacketRTP(p.vmed, p.vfmt, func(pkt *rtp.Packet) {
		au, err := dec.Decode(pkt)
		if err != nil { // more packets needed, or a broken frame
			return
		}
		for _, o := range h.Packets(pkt.Timestamp, au) {
			pub.WriteRTP(0, &o.Header, o.Payload)
		}
		if pts, ok := ss.PacketPTS(p.vmed, pkt); ok {
			srs.Maybe(pub, 0, time.Duration(pts)*time.Second/90000, pkt.Timestamp)
		}
	})
	if p.amed == nil {
		return nil
	}
	var seq uint16
	write := func(payload []byte, pts time.Duration, ts uint32) {
		hdr := rtp.Header{Version: 2, PayloadType: mediain.AudioPT, SequenceNumber: seq, Timestamp: ts}
		seq++
		pub.WriteRTP(1, &hdr, payload)
		srs.Maybe(pub, 1, pts, ts)
	}
	if p.opus != nil {
		ss.OnPacketRTP(p.amed, p.opus, func(pkt *rtp.Packet) {
			pts, _ := ss.PacketPTS(p.amed, pkt)
			write(append([]byte(nil), pkt.Payload...), time.Duration(pts)*time.Second/48000, pkt.Timestamp)
		})
		return nil
	}
	adec, err := p.aac.CreateDecoder()
	if err != nil {
		p.s.log.Warn("rtsp: AAC track unusable: video only", "stream", p.path, "err", err)
		return nil
	}
	rate := int64(p.aac.ClockRate())
	var clock mediain.OpusClock
	tc, err := mediain.StartAACToOpus(p.s.ffmpeg, p.aac.Config, p.s.p.AudioBitrate, p.s.log, func(pkt []byte, n int64) {
		pts, ts := clock.Next(n)
		write(pkt, pts, ts)
	})
	if err != nil {
		p.s.log.Warn("rtsp: cannot start the AAC->Opus transcoder: video only", "stream", p.path, "err", err)
		return nil
	}
	p.mu.Lock()
	p.tc = tc
	p.mu.Unlock()
	ss.OnPacketRTP(p.amed, p.aac, func(pkt *rtp.Packet) {
		aus, err := adec.Decode(pkt)
		if err != nil {
			return
		}
		if pts, ok := ss.PacketPTS(p.amed, pkt); ok {
			clock.Start(time.Duration(pts * int64(time.Second) / rate))
		}
		for _, au := range aus {
			tc.Write(au)
		}
	})
	return nil
}

// close ends the publication (the stream waits its grace period).
func (p *publisher) close() {
	p.mu.Lock()
	pub, tc := p.pub, p.tc
	p.pub, p.tc = nil, nil
	p.mu.Unlock()
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	if tc != nil {
		tc.Close()
	}
	if pub != nil {
		pub.End("rtsp publisher left")
	}
}
