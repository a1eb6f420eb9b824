#!/usr/bin/python3
"""A WHIP publisher and a WHEP player around GStreamer's webrtcbin.

GStreamer 1.22 (Debian 12) has webrtcbin but no whipsink/whepsrc, so the
signalling (one POST with the offer, the answer back, DELETE at the end) is
done here. The media stack is entirely GStreamer's: libnice ICE, OpenSSL
DTLS, GStreamer's RTP. Run with Debian's /usr/bin/python3 (python3-gi).

  gst_webrtc.py publish URL [--seconds N] [--video h264|vp8|none] [--audio opus|none]
  gst_webrtc.py play URL [--seconds N] [--video ...] [--audio ...] [--audio-first]
  gst_webrtc.py offer publish|play   (print the offer webrtcbin makes, no network)

The result is one JSON object on stdout: ok, error, offer, answer, status,
and for play: decoded video frames, audio buffers, first frame time (ms
after the POST), picture size.

Two quirks of libnice/webrtcbin 1.22 are handled here: libnice does not
gather on loopback interfaces, so 127.0.0.1 is added to its agent by hand
(through ctypes: Debian has no Nice typelib by default), and the ICE object
webrtcbin hands to Python is kept referenced for the pipeline's lifetime.
"""
import argparse
import ctypes
import json
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstWebRTC", "1.0")
gi.require_version("GstSdp", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

H264_CAPS = "application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000"
VP8_CAPS = "application/x-rtp,media=video,encoding-name=VP8,payload=97,clock-rate=90000"
OPUS_CAPS = "application/x-rtp,media=audio,encoding-name=OPUS,payload=111,clock-rate=48000"


def capsfilter(caps):
    return 'capsfilter caps="%s"' % caps


def _gpointer(obj):
    get = ctypes.pythonapi.PyCapsule_GetPointer
    get.restype = ctypes.c_void_p
    get.argtypes = [ctypes.py_object, ctypes.c_char_p]
    return get(obj.__gpointer__, None)


def add_loopback(webrtc, keep):
    """Make libnice gather a host candidate on 127.0.0.1."""
    ice = webrtc.get_property("ice-agent")
    agent = ice.get_property("agent")
    keep += [ice, agent]  # webrtcbin 1.22 hands these out floating
    nice = ctypes.CDLL("libnice.so.10")
    nice.nice_address_new.restype = ctypes.c_void_p
    nice.nice_address_set_from_string.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    nice.nice_address_set_from_string.restype = ctypes.c_int
    nice.nice_agent_add_local_address.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
    nice.nice_agent_add_local_address.restype = ctypes.c_int
    nice.nice_address_free.argtypes = [ctypes.c_void_p]
    addr = nice.nice_address_new()
    if not nice.nice_address_set_from_string(addr, b"127.0.0.1"):
        raise RuntimeError("nice_address_set_from_string failed")
    ok = nice.nice_agent_add_local_address(_gpointer(agent), addr)
    nice.nice_address_free(addr)
    if not ok:
        raise RuntimeError("nice_agent_add_local_address failed")


class Peer:
    def __init__(self, mode, url, seconds, video, audio, offer_only=False, audio_first=False, latency=None):
        self.mode, self.url, self.seconds = mode, url, seconds
        self.audio_first = audio_first
        self.video, self.audio, self.offer_only = video, audio, offer_only
        self.result = {"ok": False, "mode": mode, "error": None, "offer": None, "answer": None,
                       "status": None, "video_frames": 0, "audio_buffers": 0,
                       "first_video_ms": None, "first_audio_ms": None, "width": 0, "height": 0,
                       "video_caps": None, "audio_caps": None, "ice_state": None,
                       "answer_ms": None, "ice_connected_ms": None, "first_pad_ms": None}
        self.keep = []
        self.location = None
        self.posted = None
        self.loop = GLib.MainLoop()
        self.lock = threading.Lock()
        self.pipe = Gst.Pipeline.new(mode)
        self.webrtc = Gst.ElementFactory.make("webrtcbin", "webrtc")
        self.webrtc.set_property("bundle-policy", GstWebRTC.WebRTCBundlePolicy.MAX_BUNDLE)
        if latency is not None:
            self.webrtc.set_property("latency", latency)
        self.pipe.add(self.webrtc)
        add_loopback(self.webrtc, self.keep)
        self.webrtc.connect("notify::ice-gathering-state", self.on_gathering)
        self.webrtc.connect("notify::ice-connection-state", self.on_ice_state)
        if mode == "publish":
            self.build_publisher()
        else:
            self.build_player()
        bus = self.pipe.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self.on_error)

    # --- pipelines -------------------------------------------------------
    def add_chain(self, desc):
        bin_ = Gst.parse_bin_from_description(desc, True)  # desc ends in a capsfilter
        self.pipe.add(bin_)
        src = bin_.get_static_pad("src")
        sink = self.webrtc.request_pad_simple("sink_%u")
        if src.link(sink) != Gst.PadLinkReturn.OK:
            raise RuntimeError("cannot link " + desc)

    def build_publisher(self):
        if self.video == "h264":
            self.add_chain("videotestsrc is-live=true pattern=ball ! video/x-raw,width=1280,height=720,framerate=30/1 "
                           "! x264enc tune=zerolatency speed-preset=ultrafast key-int-max=60 bitrate=1500 "
                           "! video/x-h264,profile=constrained-baseline ! rtph264pay config-interval=-1 "
                           "aggregate-mode=zero-latency ! " + capsfilter(H264_CAPS))
        elif self.video == "vp8":
            self.add_chain("videotestsrc is-live=true pattern=ball ! video/x-raw,width=640,height=360,framerate=30/1 "
                           "! vp8enc deadline=1 keyframe-max-dist=60 ! rtpvp8pay ! " + capsfilter(VP8_CAPS))
        if self.audio == "opus":
            self.add_chain("audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample "
                           "! opusenc ! rtpopuspay ! " + capsfilter(OPUS_CAPS))
        for t in self.transceivers():
            t.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)

    def transceivers(self):
        out, i = [], 0
        while True:
            t = self.webrtc.emit("get-transceiver", i)
            if t is None:
                return out
            out.append(t)
            i += 1

    def build_player(self):
        recv = GstWebRTC.WebRTCRTPTransceiverDirection.RECVONLY
        caps = []
        if self.video == "h264":
            caps.append(H264_CAPS + ",packetization-mode=(string)1,profile-level-id=(string)42e01f,level-asymmetry-allowed=(string)1")
        elif self.video == "vp8":
            caps.append(VP8_CAPS)
        if self.audio == "opus":
            caps.append(OPUS_CAPS + ",encoding-params=(string)2")
        if self.audio_first:
            caps.reverse()
        for c in caps:
            self.webrtc.emit("add-transceiver", recv, Gst.Caps.from_string(c))
        for t in self.transceivers():
            t.set_property("do-nack", True)
        self.webrtc.connect("pad-added", self.on_pad)

    def on_pad(self, _, pad):
        if pad.get_direction() != Gst.PadDirection.SRC:
            return
        if self.result["first_pad_ms"] is None:
            self.result["first_pad_ms"] = self.since_post()
        dec = Gst.ElementFactory.make("decodebin")
        dec.connect("pad-added", self.on_decoded)
        self.pipe.add(dec)
        dec.sync_state_with_parent()
        pad.link(dec.get_static_pad("sink"))

    def on_decoded(self, _, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        name = caps.get_structure(0).get_name()
        kind = "video" if name.startswith("video/") else "audio"
        sink = Gst.ElementFactory.make("fakesink")
        sink.set_property("sync", False)
        self.pipe.add(sink)
        sink.sync_state_with_parent()
        pad.link(sink.get_static_pad("sink"))
        sink.get_static_pad("sink").add_probe(Gst.PadProbeType.BUFFER, self.on_buffer, kind)

    def on_buffer(self, pad, _info, kind):
        now = time.monotonic()
        with self.lock:
            r = self.result
            if kind == "video":
                r["video_frames"] += 1
                if r["first_video_ms"] is None and self.posted is not None:
                    r["first_video_ms"] = round((now - self.posted) * 1000)
                    s = pad.get_current_caps().get_structure(0)
                    r["width"], r["height"] = s.get_value("width"), s.get_value("height")
                    r["video_caps"] = s.to_string()
            else:
                r["audio_buffers"] += 1
                if r["first_audio_ms"] is None and self.posted is not None:
                    r["first_audio_ms"] = round((now - self.posted) * 1000)
                    r["audio_caps"] = pad.get_current_caps().get_structure(0).to_string()
        return Gst.PadProbeReturn.OK

    # --- signalling ------------------------------------------------------
    def start(self):
        # webrtcbin asks for negotiation once every sink pad has caps, so a
        # publisher's offer carries the encoder's parameters (profile-level-id).
        self.webrtc.connect("on-negotiation-needed", self.on_negotiation_needed)
        self.pipe.set_state(Gst.State.PLAYING)
        GLib.timeout_add(int(self.seconds * 1000) + 15000, self.fail, "timed out")
        self.loop.run()
        self.pipe.set_state(Gst.State.NULL)
        return self.result

    def on_negotiation_needed(self, *_):
        if self.result["offer"] is None and self.posted is None:
            promise = Gst.Promise.new_with_change_func(self.on_offer, None)
            self.webrtc.emit("create-offer", None, promise)

    def on_offer(self, promise, _):
        reply = promise.get_reply()
        offer = reply.get_value("offer") if reply else None
        if offer is None:
            GLib.idle_add(self.fail, "create-offer failed: %s" % (reply.to_string() if reply else None))
            return
        self.webrtc.emit("set-local-description", offer, None)
        # The offer goes out when gathering completes (host candidates on
        # loopback: immediate), or after a second with what there is.
        GLib.timeout_add(1000, self.send_offer)

    def on_gathering(self, *_):
        if self.webrtc.get_property("ice-gathering-state") == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            GLib.idle_add(self.send_offer)

    def on_ice_state(self, *_):
        state = self.webrtc.get_property("ice-connection-state").value_nick
        self.result["ice_state"] = state
        if state in ("connected", "completed") and self.result["ice_connected_ms"] is None:
            self.result["ice_connected_ms"] = self.since_post()

    def since_post(self):
        return None if self.posted is None else round((time.monotonic() - self.posted) * 1000)

    def send_offer(self):
        if self.posted is not None or self.result["error"]:
            return False
        sdp = self.webrtc.get_property("local-description").sdp.as_text()
        self.result["offer"] = sdp
        if self.offer_only:
            self.result["ok"] = True
            self.loop.quit()
            return False
        self.posted = time.monotonic()
        req = urllib.request.Request(self.url, data=sdp.encode(), method="POST",
                                     headers={"Content-Type": "application/sdp"})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                self.result["status"] = resp.status
                answer = resp.read().decode()
                loc = resp.headers.get("Location")
                self.location = urllib.parse.urljoin(self.url, loc) if loc else None
        except urllib.error.HTTPError as e:
            self.result["status"] = e.code
            self.fail("POST %s: %d %s" % (self.url, e.code, e.read().decode(errors="replace")))
            return False
        except Exception as e:  # noqa: BLE001 - reported, not raised
            self.fail("POST %s: %s" % (self.url, e))
            return False
        self.result["answer"] = answer
        self.result["answer_ms"] = self.since_post()
        ok, msg = GstSdp.SDPMessage.new_from_text(answer)
        if ok != GstSdp.SDPResult.OK:
            self.fail("unparsable answer")
            return False
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, msg)
        promise = Gst.Promise.new_with_change_func(self.on_answer_set, None)
        self.webrtc.emit("set-remote-description", desc, promise)
        return False

    def on_answer_set(self, promise, _):
        reply = promise.get_reply()
        if reply is not None and reply.has_field("error"):
            GLib.idle_add(self.fail, "set-remote-description: " + str(reply.get_value("error")))
            return
        GLib.timeout_add(int(self.seconds * 1000), self.finish)

    def finish(self):
        if self.location:
            try:
                urllib.request.urlopen(urllib.request.Request(self.location, method="DELETE"), timeout=5).close()
            except Exception as e:  # noqa: BLE001
                self.result["delete_error"] = str(e)
        self.result["ok"] = self.result["error"] is None
        self.loop.quit()
        return False

    def fail(self, msg):
        if self.result["error"] is None:
            self.result["error"] = msg
        self.loop.quit()
        return False

    def on_error(self, _bus, msg):
        err, dbg = msg.parse_error()
        GLib.idle_add(self.fail, "%s: %s (%s)" % (msg.src.get_name(), err.message, dbg))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=["publish", "play", "offer"])
    ap.add_argument("target", help="WHIP/WHEP URL, or publish|play for offer")
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--video", default="h264", choices=["h264", "vp8", "none"])
    ap.add_argument("--audio", default="opus", choices=["opus", "none"])
    ap.add_argument("--audio-first", action="store_true", help="player: offer the audio section first")
    ap.add_argument("--latency", type=int, default=None, help="webrtcbin jitter buffer in ms (GStreamer's default: 200)")
    a = ap.parse_args()
    Gst.init(None)
    if a.mode == "offer":
        p = Peer(a.target, "", 0, a.video, a.audio, offer_only=True, audio_first=a.audio_first)
    else:
        p = Peer(a.mode, a.target, a.seconds, a.video, a.audio, audio_first=a.audio_first, latency=a.latency)
    r = p.start()
    r["gstreamer"] = Gst.version_string()
    json.dump(r, sys.stdout)
    sys.stdout.write("\n")
    return 0 if r["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
