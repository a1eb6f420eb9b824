package frames

import (
	"encoding/base64"
	"strings"

	"github.com/bluenviron/mediacommon/v2/pkg/codecs/h264"
)

// H264ParamSets returns the SPS and PPS among an access unit's NAL units
// (nil when absent).
func H264ParamSets(units [][]byte) (sps, pps []byte) {
	for _, n := range units {
		if len(n) == 0 {
			continue
		}
		switch h264.NALUType(n[0] & 0x1f) {
		case h264.NALUTypeSPS:
			sps = n
		case h264.NALUTypePPS:
			pps = n
		}
	}
	return sps, pps
}

// SpropParameterSets reads SPS and PPS from an H.264 fmtp line, for
// publishers that send parameter sets only out of band.
func SpropParameterSets(fmtp string) (sps, pps []byte) {
	for _, kv := range strings.Split(fmtp, ";") {
		k, v, found := strings.Cut(strings.TrimSpace(kv), "=")
		if !found || !strings.EqualFold(k, "sprop-parameter-sets") {
			continue
		}
		var units [][]byte
		for _, part := range strings.Split(v, ",") {
			if b, err := base64.StdEncoding.DecodeString(part); err == nil && len(b) > 0 {
				units = append(units, b)
			}
		}
		return H264ParamSets(units)
	}
	return nil, nil
}
