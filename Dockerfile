# syntax=docker/dockerfile:1
#
# Tether: one image for `tether serve`, `tether gateway` and the admin commands.
#
#   docker build -t tether .
#   docker run -d --name tether -p 9443:9443 -v tether-data:/data tether
#   echo 'alice-password' | docker exec -i tether tether user add alice --password-stdin --role admin
#   docker exec tether tether tls ca > tether-ca.pem
#
#   # the gateway, with its own file (see docs/gateway.md)
#   docker run -d -p 8443:8443 -v gw-data:/data -v "$PWD/gateway.toml:/etc/tether/gateway.toml:ro" \
#       tether gateway --config /etc/tether/gateway.toml
#
# A multi-node setup (PostgreSQL, two nodes, nginx in front, the gateway) is in
# deploy/compose/compose.yaml; docs/operations.md explains the whole picture.
#
# ---------------------------------------------------------------------------------------------
# Environment variables the binary reads (flag > variable > config file > default):
#
#   TETHER_CONFIG          --config          TOML config file. Set here to /etc/tether/tether.toml,
#                                            the image's own file (below); mount yours over it, or
#                                            point this at another path.
#   TETHER_DATA_DIR        --data-dir        data directory. The image's config says /data (the
#                                            volume): SQLite database, master.key, tls/.
#   TETHER_DATABASE_URL    --database-url    sqlite://PATH (default /data/tether.db) or
#                                            postgres://USER@HOST/DB (password in the URL, in
#                                            PGPASSWORD, or in a pgpass file named by PGPASSFILE)
#   TETHER_LISTEN          --listen          HTTPS listener (the image's config: 0.0.0.0:9443)
#   TETHER_HTTP_LISTEN     --http-listen     plain HTTP listener for a TLS-terminating proxy
#                                            (off unless set; 9080 by convention)
#   TETHER_METRICS_LISTEN  --metrics-listen  Prometheus /metrics (the image's config: 0.0.0.0:9464;
#                                            "off" disables it)
#   TETHER_ADMIN_LISTEN    --admin-listen    the admin API on its own HTTPS listener only
#   TETHER_ISSUER          --issuer          public issuer URL (default https://localhost:9443)
#   TETHER_LOG_FORMAT      --log-format      text (default) or json; serve and gateway
#   TETHER_MASTER_KEY                        the master key itself (64 hex characters); when set,
#                                            master_key_file is not read. Nodes that share a
#                                            database share this key. Never bake it into an image.
#   RUST_LOG                                 log filter, default "info" (e.g. info,access=off)
#   PGPASSFILE, PGPASSWORD, PGSSLMODE, ...   read by the PostgreSQL driver for what the URL leaves out
#
# Every config file key, with its variable and flag where it has one: docs/configuration.md.
# ---------------------------------------------------------------------------------------------

# ---- build -----------------------------------------------------------------------------------
FROM rust:1-bookworm AS build
WORKDIR /src

# The toolchain the repository pins (rust-toolchain.toml), in a layer of its own.
COPY rust-toolchain.toml ./
RUN channel="$(sed -n 's/^channel *= *"\([^"]*\)".*/\1/p' rust-toolchain.toml)" \
 && test -n "$channel" \
 && rustup toolchain install "$channel" --profile minimal --component rustfmt,clippy \
 && rustc --version

COPY Cargo.toml Cargo.lock ./
COPY crates ./crates
# The build context has no .git: `tether --version` names the commit given here, e.g.
#   docker build --build-arg TETHER_GIT_COMMIT=$(git rev-parse --short=12 HEAD) -t tether .
# (crates/tether/build.rs; "unknown" without it).
ARG TETHER_GIT_COMMIT=
RUN --mount=type=cache,target=/usr/local/cargo/registry,sharing=locked \
    --mount=type=cache,target=/usr/local/cargo/git,sharing=locked \
    --mount=type=cache,target=/src/target,sharing=locked \
    cargo build --release --locked -p tether \
 && install -D -m 0755 target/release/tether /out/usr/local/bin/tether

# The data directory: owned by the runtime user, private (Tether warns about anything wider).
# Copied as a subdirectory of /out, so its owner and mode survive the COPY below; a new named
# volume mounted at /data starts with them too.
RUN install -d -m 0700 -o 65532 -g 65532 /out/data

# ---- runtime ---------------------------------------------------------------------------------
# distroless/cc: glibc and libgcc_s, which is all the binary links (aws-lc, SQLite and jemalloc
# are built in). No shell: HEALTHCHECK and every command use the exec form. For a shell, use
# debian:bookworm-slim here instead, with `useradd --system --uid 65532 tether` and the same /data.
FROM gcr.io/distroless/cc-debian12:nonroot

LABEL org.opencontainers.image.title="tether" \
      org.opencontainers.image.description="OAuth 2.0 / OpenID Connect server whose tokens are bound to their holder, and its proof-of-possession gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

COPY --from=build /out/ /

# The image's default configuration: only what a container needs to differ from the built-in
# defaults (listen on every interface, data in the volume). Mount your own file over it (keep
# data_dir = "/data"), or set TETHER_CONFIG to another path.
COPY <<EOF /etc/tether/tether.toml
# tether serve, in a container. Every key: docs/configuration.md.
data_dir = "/data"
listen = "0.0.0.0:9443"
metrics_listen = "0.0.0.0:9464"
EOF

ENV TETHER_CONFIG=/etc/tether/tether.toml

# 65532 = distroless "nonroot"; never root.
USER 65532:65532
WORKDIR /data
VOLUME ["/data"]

# tether serve: 9443 HTTPS (main listener), 9080 plain HTTP (only with http_listen, behind a
# TLS-terminating proxy), 9464 /metrics. tether gateway: 8443 HTTPS, 9465 /healthz /readyz /metrics.
EXPOSE 9443 9080 9464 8443 9465

HEALTHCHECK --interval=10s --timeout=3s --start-period=15s --retries=3 \
    CMD ["/usr/local/bin/tether", "health"]

# SIGTERM stops accepting, lets in-flight requests finish (up to 20 s) and exits 0.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/tether"]
CMD ["serve"]
