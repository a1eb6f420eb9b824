// LevelMeter shows a microphone's level: the RMS of its signal through an
// AnalyserNode, -60 dBFS (silence) to 0 dBFS (full scale) as 0..100, in a
// bar and an ARIA meter, ten times a second.
export class LevelMeter {
  constructor(bar, meter) {
    this.bar = bar;
    this.meter = meter;
    this.ctx = null;
    this.source = null;
    this.analyser = null;
    this.timer = null;
    this.level = 0;
  }

  // attach follows media's first audio track (none: the meter rests at 0).
  attach(media) {
    clearInterval(this.timer);
    this.source?.disconnect();
    this.source = null;
    this.level = 0;
    this.show(0);
    const track = media?.getAudioTracks()[0];
    const AC = window.AudioContext || window.webkitAudioContext;
    if (!track || !AC) return;
    this.ctx ??= new AC();
    this.ctx.resume?.().catch(() => {});
    this.analyser ??= Object.assign(this.ctx.createAnalyser(), { fftSize: 1024 });
    this.source = this.ctx.createMediaStreamSource(new MediaStream([track]));
    this.source.connect(this.analyser);
    const buf = new Float32Array(this.analyser.fftSize);
    this.timer = setInterval(() => {
      this.analyser.getFloatTimeDomainData(buf);
      let sum = 0;
      for (const x of buf) sum += x * x;
      const db = 20 * Math.log10(Math.sqrt(sum / buf.length) || 1e-8);
      this.level = Math.max(0, Math.min(100, Math.round(((db + 60) / 60) * 100)));
      this.show(track.enabled ? this.level : 0);
    }, 100);
  }

  show(v) {
    this.bar.style.width = `${v}%`;
    this.meter.setAttribute('aria-valuenow', String(v));
  }

  // resume: browsers start an AudioContext suspended until a user gesture.
  resume() {
    this.ctx?.resume?.().catch(() => {});
  }
}
