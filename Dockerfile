# Multi-stage build: a static livegate binary on a small Debian image with
# ffmpeg, which livegate runs for the parts that need a codec it does not
# carry: Opus -> AAC (HLS audio for Safari, RTMP push), AAC -> Opus (RTMP and
# RTSP ingest) and the room composite. Without ffmpeg those degrade (video
# only, Opus-only HLS, no composite) with a log line.
#   docker build -t livegate .
#   docker run --rm -p 8080:8080 -p 8189:8189/udp -p 8189:8189/tcp \
#     -e LIVEGATE_AUTH_KEY=... -e LIVEGATE_WEBRTC_IPS=PUBLIC_IP livegate
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/livegate ./cmd/livegate \
 && mkdir -p /out/data

FROM debian:bookworm-slim
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends ffmpeg ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 65532 --home-dir /data --shell /usr/sbin/nologin livegate
COPY --from=build /out/livegate /usr/local/bin/livegate
# Recordings and their spool; mount a volume here to keep them.
COPY --from=build --chown=65532:65532 /out/data /data
WORKDIR /
ENV LIVEGATE_RECORD_DIR=/data/recordings LIVEGATE_RECORD_SPOOL=/data/spool
VOLUME ["/data"]
# HTTP (WHIP, WHEP, API, pages), WebRTC media on one UDP and one TCP port
# (ICE-TCP for networks that drop UDP), RTMP and RTSP ingest. The built-in
# TURN server's ports (turn-udp, turn-tcp, turn-tls) are off by default:
# publish them too when you set them.
EXPOSE 8080/tcp 8189/udp 8189/tcp 1935/tcp 8554/tcp
USER 65532:65532
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/livegate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/livegate"]
