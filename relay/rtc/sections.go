package rtc

import (
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/pion/sdp/v3"
)

// Plan is what the gateway decided for each media section of an offer.
type Plan struct {
	// Keep maps the mid of every accepted section to the one payload type
	// it will carry.
	Keep map[string]uint8
	// Close lists the mids of sections the answer must refuse with port 0:
	// those the gateway rejects and those the offerer closed itself.
	Close []string
	// Direction, if set, is written on every accepted section of the
	// answer ("recvonly" for publishers, "sendonly" for viewers). pion
	// answers a sendrecv offer sendrecv when its transceiver could also
	// receive, which would invite media nobody reads.
	Direction string
}

// setDirection writes dir on the sections of an answer whose mid is in
// keep.
func setDirection(answer string, keep map[string]uint8, dir string) (string, error) {
	if dir == "" {
		return answer, nil
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return "", fmt.Errorf("parse own answer: %w", err)
	}
	for _, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		if _, ok := keep[mid]; !ok || md.MediaName.Port.Value == 0 {
			continue
		}
		for i, a := range md.Attributes {
			switch a.Key {
			case "sendrecv", "sendonly", "recvonly", "inactive":
				md.Attributes[i] = sdp.Attribute{Key: dir}
			}
		}
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("write answer: %w", err)
	}
	return string(b), nil
}

// restrictOffer returns the offer with every section in keep reduced to
// its chosen payload type. pion then negotiates exactly that codec: left
// alone, it keeps only the payload types that match its registered codecs
// exactly when a section has any, and would throw away a codec chosen here
// (42c01f next to VP8, say), leaving an answered section whose packets it
// cannot map to a codec.
func restrictOffer(raw string, keep map[string]uint8) (string, error) {
	if len(keep) == 0 {
		return raw, nil
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(raw); err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	for _, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		pt, ok := keep[mid]
		if !ok {
			continue
		}
		ptStr := strconv.Itoa(int(pt))
		md.MediaName.Formats = []string{ptStr}
		attrs := md.Attributes[:0:0]
		for _, a := range md.Attributes {
			switch a.Key {
			case "rtpmap", "fmtp", "rtcp-fb":
				if p, _, _ := strings.Cut(a.Value, " "); p != ptStr && p != "*" {
					continue
				}
			}
			attrs = append(attrs, a)
		}
		md.Attributes = attrs
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("%w: %w", ErrBadOffer, err)
	}
	return string(b), nil
}

// closeSections refuses the listed sections of an answer (port 0, RFC 3264
// section 6, and out of the BUNDLE group, RFC 8843 section 7.3.3). pion
// writes every candidate into the first section; if that one is refused,
// they move to the first section still open, or the peer would have none.
// offerMids are the offer's mids in order: pion writes sections it refuses
// itself without one, and peers match answer sections to theirs by mid.
//
// The offer's BUNDLE tag (its first bundled mid) is the exception: it is
// answered inactive, not closed. Chromium 156 fails to apply an answer that
// refuses its tag section ("Failed to setup RTCP mux" on the next one),
// which is what a WHEP player offering video first gets for an audio-only
// stream; an inactive section plays everywhere tested (docs/interop.md).
func closeSections(answer string, offerMids, mids []string, tag string) (string, error) {
	if len(mids) == 0 {
		return answer, nil
	}
	var sd sdp.SessionDescription
	if err := sd.UnmarshalString(answer); err != nil {
		return "", fmt.Errorf("parse own answer: %w", err)
	}
	var kept []string // refused mids that stay in the bundle, inactive
	for _, md := range sd.MediaDescriptions {
		mid, _ := md.Attribute(sdp.AttrKeyMID)
		if mid == tag && tag != "" && md.MediaName.Port.Value != 0 && slices.Contains(mids, mid) {
			kept = append(kept, mid)
			if md.MediaName.Media == "application" {
				continue // a data channel has no direction: it stays negotiated, unused
			}
			attrs := md.Attributes[:0:0]
			for _, a := range md.Attributes {
				switch a.Key {
				case "sendrecv", "sendonly", "recvonly", "inactive", "ssrc", "ssrc-group", "msid":
					continue
				}
				attrs = append(attrs, a)
			}
			md.Attributes = append(attrs, sdp.Attribute{Key: "inactive"})
		}
	}
	mids = slices.DeleteFunc(slices.Clone(mids), func(m string) bool { return slices.Contains(kept, m) })
	var moved []sdp.Attribute
	var firstOpen *sdp.MediaDescription
	for i, md := range sd.MediaDescriptions {
		mid, hasMid := md.Attribute(sdp.AttrKeyMID)
		if !hasMid && i < len(offerMids) && offerMids[i] != "" {
			mid = offerMids[i]
			md.Attributes = append(md.Attributes, sdp.Attribute{Key: sdp.AttrKeyMID, Value: mid})
		}
		if md.MediaName.Port.Value == 0 {
			if _, bundleOnly := md.Attribute("bundle-only"); !bundleOnly && !slices.Contains(mids, mid) {
				continue // refused by pion already
			}
		}
		if !slices.Contains(mids, mid) {
			if firstOpen == nil {
				firstOpen = md
			}
			continue
		}
		md.MediaName.Port = sdp.RangedPort{Value: 0}
		attrs := md.Attributes[:0:0]
		for _, a := range md.Attributes {
			switch a.Key {
			case "candidate", "end-of-candidates":
				moved = append(moved, a)
				continue
			case "sendrecv", "sendonly", "recvonly", "inactive", "bundle-only":
				continue
			}
			attrs = append(attrs, a)
		}
		md.Attributes = append(attrs, sdp.Attribute{Key: "inactive"})
	}
	if firstOpen != nil && len(moved) > 0 {
		if _, has := firstOpen.Attribute("candidate"); !has {
			firstOpen.Attributes = append(firstOpen.Attributes, moved...)
		}
	}
	for i, a := range sd.Attributes {
		if a.Key != "group" || !strings.HasPrefix(a.Value, "BUNDLE") {
			continue
		}
		fields := strings.Fields(a.Value)
		kept := []string{fields[0]}
		for _, m := range fields[1:] {
			if !slices.Contains(mids, m) {
				kept = append(kept, m)
			}
		}
		if len(kept) == 1 {
			sd.Attributes = slices.Delete(sd.Attributes, i, i+1)
		} else {
			sd.Attributes[i].Value = strings.Join(kept, " ")
		}
		break
	}
	b, err := sd.Marshal()
	if err != nil {
		return "", fmt.Errorf("write answer: %w", err)
	}
	return string(b), nil
}

// RejectCounter counts refused media sections by kind and reason, for the
// metrics. The label values are bounded: kinds come from a fixed set and
// reasons are the Reason constants.
type RejectCounter struct {
	mu sync.Mutex
	n  map[[2]string]uint64
}

// Add counts r.
func (c *RejectCounter) Add(r Rejection) {
	kind := r.Kind
	switch kind {
	case "audio", "video", "application":
	default:
		kind = "other"
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[[2]string]uint64{}
	}
	c.n[[2]string{kind, r.Reason}]++
}

// Refused counts rs and logs each as refused to who ("viewer",
// "publisher"): an answer's refused sections are never silent.
func (c *RejectCounter) Refused(log *slog.Logger, who string, rs []Rejection) {
	for _, r := range rs {
		c.Add(r)
		log.Warn(who+" media section refused", "mid", r.Mid, "kind", r.Kind, "reason", r.Reason, "detail", r.Detail)
	}
}

// Each calls f for every kind and reason counted so far.
func (c *RejectCounter) Each(f func(kind, reason string, n uint64)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, n := range c.n {
		f(k[0], k[1], n)
	}
}
