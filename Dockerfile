# Multi-stage build: a static livegate binary on a minimal, non-root image.
#   docker build -t livegate .
#   docker run --rm -p 8080:8080 -p 8189:8189/udp \
#     -e LIVEGATE_AUTH_KEY=... -e LIVEGATE_WEBRTC_IPS=PUBLIC_IP livegate
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/livegate ./cmd/livegate \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/livegate /usr/local/bin/livegate
# Recordings and their spool; mount a volume here to keep them.
COPY --from=build --chown=nonroot:nonroot /out/data /data
WORKDIR /
ENV LIVEGATE_RECORD_DIR=/data/recordings LIVEGATE_RECORD_SPOOL=/data/spool
VOLUME ["/data"]
# HTTP (WHIP, WHEP, API, pages, /metrics) and the one UDP port for WebRTC
# media. RTMP (1935) and RTSP (8554) when those listeners are enabled.
EXPOSE 8080/tcp 8189/udp 1935/tcp 8554/tcp
USER nonroot:nonroot
HEALTHCHECK --interval=10s --timeout=4s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/livegate", "healthcheck"]
ENTRYPOINT ["/usr/local/bin/livegate"]
