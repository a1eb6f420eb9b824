package codec

import (
	"encoding/base64"
	"strings"
)

// H264ParamSets returns the last SPS and PPS among an access unit's NAL
// units (nil when absent).
func H264ParamSets(units [][]byte) (sps, pps []byte) {
	for _, n := range units {
		if len(n) == 0 {
			continue
		}
		switch n[0] & 0x1f {
		case h264NALUSPS:
			sps = n
		case h264NALUPPS:
			pps = n
		}
	}
	return sps, pps
}

// H264SpropParameterSets reads SPS and PPS from the sprop-parameter-sets of
// an H.264 fmtp line, for publishers that send parameter sets only out of
// band (RFC 6184 section 8.1). Parts that are not valid base64 are skipped.
func H264SpropParameterSets(fmtp string) (sps, pps []byte) {
	v := FmtpParam(fmtp, "sprop-parameter-sets")
	if v == "" {
		return nil, nil
	}
	var units [][]byte
	for _, part := range strings.Split(v, ",") {
		if b, err := base64.StdEncoding.DecodeString(part); err == nil && len(b) > 0 {
			units = append(units, b)
		}
	}
	return H264ParamSets(units)
}
