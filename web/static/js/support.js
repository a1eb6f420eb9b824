// What this browser supports of what the host page needs, listed on the
// page before joining.

export function supportChecks() {
  const caps = window.RTCRtpSender?.getCapabilities?.('video')?.codecs || [];
  return [
    ['WebRTC', !!window.RTCPeerConnection],
    ['Camera and microphone', !!navigator.mediaDevices?.getUserMedia && window.isSecureContext],
    ['Screen sharing', !!navigator.mediaDevices?.getDisplayMedia],
    ['H.264 video', caps.some((c) => c.mimeType === 'video/H264')],
    ['Codec preferences', !!window.RTCRtpTransceiver?.prototype?.setCodecPreferences],
    ['Room events (EventSource)', !!window.EventSource],
    ['Mic level meter (Web Audio)', !!(window.AudioContext || window.webkitAudioContext)],
  ];
}

export function renderSupport(list) {
  list.replaceChildren(
    ...supportChecks().map(([what, ok]) => {
      const li = document.createElement('li');
      li.dataset.ok = String(ok);
      li.textContent = `${ok ? '✓' : '✗'} ${what}`;
      return li;
    }),
  );
}
