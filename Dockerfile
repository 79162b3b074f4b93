# zkproxy: a static binary on a minimal, non-root image.
#   docker build -t zkproxy .
#   docker run -p 2181:2181 -p 9181:9181 -v zkproxy-data:/var/lib/zkproxy zkproxy \
#     serve --source zk1:2181,zk2:2181,zk3:2181 --destination zk4:2181,zk5:2181,zk6:2181 \
#     --admin-listen 0.0.0.0:9181 --admin-token "$TOKEN"
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
ARG VERSION=dev
RUN CGO_ENABLED=0 go build -trimpath -ldflags "-s -w -X main.version=${VERSION}" -o /out/zkproxy ./cmd/zkproxy \
 && mkdir -p /out/data

FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/zkproxy /usr/local/bin/zkproxy
# The cutover phase is persisted here. A single zkproxy keeps it on a volume so
# a restarted container never routes clients to the wrong ensemble; a fleet
# (fleet: <name>) reads its phase from ZooKeeper and needs no volume.
COPY --from=build --chown=nonroot:nonroot /out/data /var/lib/zkproxy
VOLUME ["/var/lib/zkproxy"]
# 2181: ZooKeeper clients. 9181: admin HTTP (/metrics, /healthz, /readyz, /cutover, /sessions).
EXPOSE 2181 9181
# A config file can be mounted at /etc/zkproxy/zkproxy.yaml and named with
# --config /etc/zkproxy/zkproxy.yaml (or ZKPROXY_CONFIG); env and flags work too.
# TLS certificates are PEM files mounted anywhere (a Kubernetes secret volume,
# say) and named with --tls-cert, --source-tls-cert, ...: zkproxy reads them
# again when the mounted files change. The image carries the system CA roots
# used when no --*-tls-ca is given.
ENV ZKPROXY_DATA_DIR=/var/lib/zkproxy
USER nonroot:nonroot
# Exec form: the image has no shell and no curl. `zkproxy health` GETs the
# admin /healthz at the address the serve configuration gives it
# (ZKPROXY_ADMIN_LISTEN or the config file, default 127.0.0.1:9181; a
# wildcard host is asked on loopback), over https when admin-tls-cert is set
# (verified against ZKPROXY_ADMIN_CA and ZKPROXY_ADMIN_SERVER_NAME), with
# ZKPROXY_ADMIN_TOKEN when set. When the admin keys are given as serve flags
# instead, set ZKPROXY_ADMIN_URL too; with the admin API off, override or
# disable this check.
HEALTHCHECK --interval=15s --timeout=5s --start-period=10s --retries=3 \
  CMD ["/usr/local/bin/zkproxy", "health", "--timeout", "4s"]
ENTRYPOINT ["/usr/local/bin/zkproxy"]
CMD ["serve"]
