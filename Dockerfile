# Multi-stage build: a static livegate binary on a minimal, non-root image.
#   docker build -t livegate .
#   docker run --rm -p 8080:8080 -p 8189:8189/udp livegate --webrtc-ips PUBLIC_IP
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/livegate ./cmd/livegate

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/livegate /usr/local/bin/livegate
# HTTP (WHIP, WHEP, API, pages) and the one UDP port for WebRTC media.
EXPOSE 8080/tcp 8189/udp
USER nonroot:nonroot
ENTRYPOINT ["/usr/local/bin/livegate"]
