// Package clip turns the canned test clip in testdata/ (clip.h264, clip.ogg)
// into media samples and replays them in real time, so a test publisher or a
// load tool can feed a WebRTC track without an encoder or a camera.
//
// The loaders read everything into memory up front: the clip is small, and a
// load tool running many publishers wants to share one decoded copy rather
// than parse files in every session.
package clip

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"time"

	"github.com/pion/webrtc/v4/pkg/media/h264reader"
	"github.com/pion/webrtc/v4/pkg/media/oggreader"
)

// Sample is one unit to hand to a track writer, e.g. pion's
// TrackLocalStaticSample.WriteSample(media.Sample{Data: s.Data, Duration: s.Duration}).
type Sample struct {
	// Data is one H.264 access unit in Annex-B form (every NAL of the
	// frame, SPS/PPS included when present, each behind a 4-byte start
	// code), or one Opus packet. It is shared by every caller and every
	// loop of Play, so treat it as read-only.
	Data []byte
	// Duration is how long the sample plays, which is what pion turns into
	// the RTP timestamp step.
	Duration time.Duration
	// Keyframe reports whether a decoder can start at this sample: access
	// units holding an IDR slice for H.264, every packet for Opus.
	Keyframe bool
}

// VideoFrameRate is the frame rate of testdata/clip.h264. Annex-B carries no
// timing a simple reader can trust, so LoadH264 assumes it.
const VideoFrameRate = 30

// opusClockRate is fixed by RFC 7845: Ogg Opus granule positions count
// 48 kHz samples whatever the input rate was.
const opusClockRate = 48000

var annexBStartCode = []byte{0, 0, 0, 1}

// LoadH264 splits an Annex-B H.264 elementary stream into access units, one
// Sample per frame at VideoFrameRate.
//
// The clip is encoded with SPS/PPS in front of every IDR, so every keyframe
// sample is self-contained and a subscriber joining mid-stream can decode
// from the next keyframe without out-of-band parameter sets.
func LoadH264(path string) ([]Sample, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	// SEI is kept so an access unit is byte-for-byte what the encoder
	// produced; h264reader drops it by default.
	r, err := h264reader.NewReaderWithOptions(bytes.NewReader(raw), h264reader.WithIncludeSEI(true))
	if err != nil {
		return nil, err
	}

	var (
		samples []Sample
		au      []byte
		hasVCL  bool
		isIDR   bool
	)
	flush := func() {
		samples = append(samples, Sample{Data: au, Keyframe: isIDR})
		au, hasVCL, isIDR = nil, false, false
	}
	for {
		nal, err := r.NextNAL()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if len(nal.Data) == 0 {
			continue
		}
		typ := nal.UnitType
		vcl := typ == h264reader.NalUnitTypeCodedSliceNonIdr || typ == h264reader.NalUnitTypeCodedSliceIdr
		if hasVCL && startsAccessUnit(typ, nal.Data, vcl) {
			flush()
		}
		au = append(au, annexBStartCode...)
		au = append(au, nal.Data...)
		if vcl {
			hasVCL = true
		}
		if typ == h264reader.NalUnitTypeCodedSliceIdr {
			isIDR = true
		}
	}
	if len(au) > 0 {
		if !hasVCL {
			// A frame without a slice would be sent as an empty picture.
			return nil, fmt.Errorf("%s: trailing NAL units without a slice", path)
		}
		flush()
	}
	if len(samples) == 0 {
		return nil, fmt.Errorf("%s: no H.264 frames", path)
	}

	// Durations alternate between 33333333 and 33333334 ns so that every
	// 30 frames add up to exactly one second; a flat Second/30 would lose
	// 10 ns a second and let looped video creep away from looped audio.
	for i := range samples {
		samples[i].Duration = frameTime(i+1) - frameTime(i)
	}
	return samples, nil
}

func frameTime(i int) time.Duration {
	return time.Duration(i) * time.Second / VideoFrameRate
}

// startsAccessUnit applies the first-NAL-of-a-new-access-unit rules of
// H.264 7.4.1.2.3 that matter for single-layer streams, given that the
// current access unit already has a slice.
func startsAccessUnit(typ h264reader.NalUnitType, data []byte, vcl bool) bool {
	switch {
	case typ == h264reader.NalUnitTypeAUD, typ == h264reader.NalUnitTypeSPS,
		typ == h264reader.NalUnitTypePPS, typ == h264reader.NalUnitTypeSEI,
		typ >= 14 && typ <= 18:
		return true
	case vcl:
		// first_mb_in_slice is the first ue(v) of the slice header; the
		// value 0 is coded as a lone '1' bit, so a set top bit means this
		// slice starts a new picture. Later slices of a multi-slice
		// picture stay in the same access unit.
		return len(data) > 1 && data[1]&0x80 != 0
	}
	return false
}

// LoadOpus reads an Ogg Opus file written with one Opus packet per page
// (ffmpeg -page_duration 20000 with 20 ms frames) and returns one Sample per
// packet.
//
// pion's oggreader hands back whole page payloads and drops the lacing that
// separates packets, so a page holding several packets would come out as one
// corrupt packet. The granule positions are checked against each packet's own
// length to reject such files instead of sending garbage.
func LoadOpus(path string) ([]Sample, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	r, _, err := oggreader.NewWith(bytes.NewReader(raw))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}

	type page struct {
		data    []byte
		granule uint64
		samples int
	}
	var pages []page
	for {
		payload, hdr, err := r.ParseNextPage()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		if t, ok := hdr.HeaderType(payload); ok && t == oggreader.HeaderOpusTags {
			continue
		}
		if len(payload) == 0 {
			continue
		}
		// Granule -1 marks a page on which no packet ends, i.e. a packet
		// split across pages, which oggreader cannot reassemble.
		if hdr.GranulePosition == ^uint64(0) {
			return nil, fmt.Errorf("%s: Opus packet spans Ogg pages", path)
		}
		n, err := opusPacketSamples(payload)
		if err != nil {
			return nil, fmt.Errorf("%s: page %d: %w", path, len(pages), err)
		}
		pages = append(pages, page{data: payload, granule: hdr.GranulePosition, samples: n})
	}
	if len(pages) == 0 {
		return nil, fmt.Errorf("%s: no Opus packets", path)
	}

	samples := make([]Sample, len(pages))
	for i, p := range pages {
		// The first page has no predecessor to diff against, and the last
		// may legitimately end short (end trimming); neither changes how
		// long the packet itself decodes to, which is what RTP pacing needs.
		if i > 0 {
			delta := p.granule - pages[i-1].granule
			last := i == len(pages)-1
			if delta != uint64(p.samples) && (!last || delta > uint64(p.samples)) {
				return nil, fmt.Errorf("%s: page %d advances %d samples but its packet holds %d; "+
					"write one packet per page (ffmpeg -page_duration 20000)", path, i, delta, p.samples)
			}
		}
		samples[i] = Sample{
			Data:     p.data,
			Duration: time.Duration(p.samples) * time.Second / opusClockRate,
			Keyframe: true,
		}
	}
	return samples, nil
}

// opusPacketSamples returns how many 48 kHz samples an Opus packet decodes
// to, from its TOC byte (RFC 6716 section 3.1).
func opusPacketSamples(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, errors.New("empty Opus packet")
	}
	config := p[0] >> 3
	var frame int
	switch {
	case config < 12: // SILK-only: 10, 20, 40, 60 ms
		frame = [4]int{480, 960, 1920, 2880}[config&3]
	case config < 16: // hybrid: 10, 20 ms
		frame = [2]int{480, 960}[config&1]
	default: // CELT-only: 2.5, 5, 10, 20 ms
		frame = [4]int{120, 240, 480, 960}[config&3]
	}
	switch p[0] & 3 {
	case 0:
		return frame, nil
	case 1, 2:
		return 2 * frame, nil
	default:
		if len(p) < 2 || p[1]&0x3f == 0 {
			return 0, errors.New("bad Opus frame count")
		}
		return int(p[1]&0x3f) * frame, nil
	}
}

// maxLag bounds how far Play may fall behind its schedule before it gives up
// catching up. Catching up means writing back-to-back, and a second or more
// of video in one burst is dropped or frozen by receivers anyway; after a
// long stall (overloaded load machine, blocked writer) it is better to
// resume at normal pace from "now".
const maxLag = time.Second

// Play writes samples in order, looping over them forever, until ctx is done
// or write fails. write receives the sample and the zero-based loop count,
// e.g. to log progress or offset a frame counter.
//
// Each sample is written at start + the summed durations of the samples
// before it, so timer and write latency do not accumulate into drift over a
// long run. The first sample is written immediately.
//
// Play returns ctx.Err() when ctx is done, write's error if write fails, and
// an error up front if samples cannot be paced (empty or zero total
// duration), which would otherwise spin.
func Play(ctx context.Context, samples []Sample, write func(s Sample, loop int) error) error {
	return play(ctx, samples, write, maxLag)
}

func play(ctx context.Context, samples []Sample, write func(Sample, int) error, maxLag time.Duration) error {
	var total time.Duration
	for _, s := range samples {
		if s.Duration < 0 {
			return errors.New("clip: negative sample duration")
		}
		total += s.Duration
	}
	if total <= 0 {
		return errors.New("clip: nothing to play")
	}

	// Since Go 1.23 Reset never leaves a stale tick behind, so one idle
	// timer can be re-armed for every wait.
	timer := time.NewTimer(math.MaxInt64)
	defer timer.Stop()

	start := time.Now()
	var offset time.Duration // schedule position of the next sample
	for loop := 0; ; loop++ {
		for _, s := range samples {
			if err := ctx.Err(); err != nil {
				return err
			}
			due := start.Add(offset)
			wait := time.Until(due)
			if wait < -maxLag {
				start = start.Add(-wait)
				wait = 0
			}
			if wait > 0 {
				timer.Reset(wait)
				select {
				case <-ctx.Done():
					return ctx.Err()
				case <-timer.C:
				}
			}
			if err := write(s, loop); err != nil {
				return err
			}
			offset += s.Duration
		}
	}
}
