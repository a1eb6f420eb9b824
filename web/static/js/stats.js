// Live statistics of a peer connection from getStats(): bitrate,
// resolution, frame rate, round-trip time, frames dropped, packets lost.
//
//   const sample = sampler(pc, 'inbound-rtp');
//   setInterval(async () => show(format(await sample())), 1000);

/** Formats bits per second. */
export function formatBitrate(bps) {
  if (!(bps >= 0)) return '';
  if (bps >= 1e6) return `${(bps / 1e6).toFixed(2)} Mb/s`;
  return `${Math.round(bps / 1e3)} kb/s`;
}

/**
 * Returns a function that samples pc's statistics for RTP streams of type
 * ('inbound-rtp' for players, 'outbound-rtp' for publishers). Bitrates are
 * averaged since the previous sample.
 */
export function sampler(pc, type) {
  let prev = null;
  return async () => {
    const report = await pc.getStats();
    const byId = new Map();
    report.forEach((s) => byId.set(s.id, s));
    let bytes = 0;
    let video = null;
    let audio = null;
    let rtt = null;
    let lost = 0;
    let jitter = null;
    let since = null;
    report.forEach((s) => {
      if (s.type === type) {
        bytes += (type === 'inbound-rtp' ? s.bytesReceived : s.bytesSent) || 0;
        if (s.kind === 'video') video = s;
        else if (s.kind === 'audio') audio = s;
        if (type === 'inbound-rtp') {
          lost += s.packetsLost || 0;
          if (s.kind === 'video' && s.jitter != null) jitter = s.jitter;
          since = lastPacketAge(s, since);
        }
      } else if (s.type === 'remote-inbound-rtp') {
        // What the other side reports about our outbound streams.
        lost += s.packetsLost || 0;
        if (s.roundTripTime != null) rtt = s.roundTripTime;
      } else if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        if (rtt == null && s.currentRoundTripTime != null) rtt = s.currentRoundTripTime;
      }
    });
    const now = performance.now();
    const out = {
      bitrate: prev && now > prev.t ? ((bytes - prev.bytes) * 8) / ((now - prev.t) / 1000) : null,
      width: video?.frameWidth || 0,
      height: video?.frameHeight || 0,
      fps: video?.framesPerSecond ?? null,
      rtt: rtt == null ? null : rtt * 1000, // ms
      framesDropped: video?.framesDropped ?? null, // inbound only
      framesDecoded: video?.framesDecoded ?? null,
      packetsLost: lost,
      jitter: jitter == null ? null : jitter * 1000, // ms
      qualityLimitation: video?.qualityLimitationReason || '', // outbound only
      codec: (video && byId.get(video.codecId)?.mimeType?.replace(/^video\//, '')) || '',
      audio: !!audio,
      sinceLastPacket: since, // ms, inbound only; null before the first packet
    };
    prev = { bytes, t: now };
    return out;
  };
}

/**
 * How long ago (ms) pc received its last RTP packet on any track, or null
 * before the first one.
 */
export async function sinceLastPacket(pc) {
  let since = null;
  (await pc.getStats()).forEach((s) => {
    if (s.type === 'inbound-rtp') since = lastPacketAge(s, since);
  });
  return since;
}

// lastPacketAge is the smaller of since and the age of stat's last packet.
function lastPacketAge(stat, since) {
  if (!stat.lastPacketReceivedTimestamp) return since;
  const ms = stat.timestamp - stat.lastPacketReceivedTimestamp; // same clock, whatever its origin
  return since == null ? ms : Math.min(since, ms);
}

/** One line of text for a sample. */
export function format(s) {
  if (!s) return '';
  const parts = [];
  if (s.width) parts.push(`${s.width}×${s.height}`);
  if (s.fps != null) parts.push(`${Math.round(s.fps)} fps`);
  if (s.bitrate != null) parts.push(formatBitrate(s.bitrate));
  if (s.codec) parts.push(s.codec);
  if (s.rtt != null) parts.push(`RTT ${Math.round(s.rtt)} ms`);
  if (s.framesDropped != null) parts.push(`${s.framesDropped} dropped`);
  if (s.packetsLost) parts.push(`${s.packetsLost} lost`);
  if (s.qualityLimitation && s.qualityLimitation !== 'none') parts.push(`limited by ${s.qualityLimitation}`);
  return parts.join(' · ');
}

/**
 * Calls show with a sample of pc's statistics once a second until the
 * returned function is called.
 */
export function statsLoop(pc, type, show) {
  const sample = sampler(pc, type);
  const tick = async () => {
    try {
      show(await sample());
    } catch {
      // the connection is closed
    }
  };
  tick();
  const timer = setInterval(tick, 1000);
  return () => clearInterval(timer);
}
