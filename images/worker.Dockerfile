# syntax=docker/dockerfile:1
# The analysis worker: `docker build -f images/worker.Dockerfile -t golftracker-worker .`
# from the repository root. The operator runs it as `golftracker-worker run` (uid 65532,
# read-only root filesystem, /tmp an emptyDir).

FROM rust:1.95-bookworm AS build
# FFmpeg headers and libclang for ffmpeg-next's bindings (build stage only).
RUN apt-get update \
 && apt-get install -y --no-install-recommends clang libclang-dev pkg-config \
      libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libswresample-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p golftracker-worker --bin golftracker-worker \
 && install -D target/release/golftracker-worker /out/golftracker-worker

FROM debian:bookworm-slim
# Exactly the libraries the binary links (tests/tests/images.rs checks this list against
# the binary's ELF needs); their own dependencies come with them. ca-certificates: the
# trust roots for S3 and Vault over TLS.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates \
      libavcodec59 libavformat59 libavutil57 libswscale6 \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 65532 --user-group --no-create-home --shell /usr/sbin/nologin golftracker
COPY --from=build /out/golftracker-worker /usr/local/bin/golftracker-worker
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/golftracker-worker"]
CMD ["run"]
