# syntax=docker/dockerfile:1
# shardcast-node in a container.
#
#   docker build -t shardcast .
#   docker run --rm -p 8080:8080 -p 9404:9404 \
#     --security-opt seccomp=unconfined --ulimit memlock=-1 --ulimit nofile=1048576 \
#     -e SHARDCAST_SECRET=change-me-to-32-random-bytes shardcast
#
# io_uring: Docker's default seccomp profile blocks io_uring_setup, so the
# node needs a profile that allows io_uring_setup/enter/register (or
# seccomp=unconfined as above); glommio also locks memory for its rings
# (memlock). One file descriptor per connection: raise nofile to your target.

FROM rust:1-bookworm AS build
WORKDIR /src
COPY . .
# BuildKit cache mounts keep the registry and build artifacts between builds.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin shardcast-node \
 && cp target/release/shardcast-node /usr/local/bin/shardcast-node

FROM debian:bookworm-slim
RUN useradd --system --uid 10001 shardcast
COPY --from=build /usr/local/bin/shardcast-node /usr/local/bin/shardcast-node
USER shardcast
EXPOSE 8080 9404
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=2s CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.1\\r\\nHost: l\\r\\n\\r\\n' >&3 && head -c 15 <&3 | grep -q 200"]
ENTRYPOINT ["/usr/local/bin/shardcast-node"]
CMD ["--listen", "0.0.0.0:8080", "--metrics-listen", "0.0.0.0:9404"]
