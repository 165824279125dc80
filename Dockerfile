# syntax=docker/dockerfile:1
# memcached-lite: build with `docker build -t memcached-lite .`
# BuildKit cache mounts keep the cargo registry and compiled dependencies
# between builds, so a source change rebuilds only this crate.

FROM rust:1.95-slim-bookworm AS builder
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin memcached-lite \
    && install -m 0755 target/release/memcached-lite /usr/local/bin/memcached-lite

FROM debian:bookworm-slim
# A fixed non-root uid/gid so volume ownership and k8s fsGroup line up.
RUN groupadd --system --gid 10001 memcached-lite \
    && useradd --system --no-log-init --uid 10001 --gid memcached-lite \
       --home-dir /data --no-create-home --shell /usr/sbin/nologin memcached-lite \
    && mkdir /data \
    && chown memcached-lite:memcached-lite /data
COPY --from=builder /usr/local/bin/memcached-lite /usr/local/bin/memcached-lite

# Inside the container listen on every interface; publish ports to choose
# who can reach them (there is no authentication).
ENV MEMCACHED_LITE_LISTEN=0.0.0.0:11211 \
    MEMCACHED_LITE_HTTP_LISTEN=0.0.0.0:8080 \
    MEMCACHED_LITE_DATA_DIR=/data
VOLUME ["/data"]
EXPOSE 11211 8080
USER 10001:10001

# `healthcheck` sends `version` to the memcached port: no curl needed.
HEALTHCHECK --interval=10s --timeout=5s --start-period=15s --retries=3 \
    CMD ["memcached-lite", "healthcheck", "--timeout-ms", "3000"]
# SIGTERM: stop accepting, finish in-flight commands, sync to disk, exit.
STOPSIGNAL SIGTERM
ENTRYPOINT ["memcached-lite"]
CMD ["serve"]
