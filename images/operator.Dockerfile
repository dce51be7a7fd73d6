# syntax=docker/dockerfile:1
# The operator: `docker build -f images/operator.Dockerfile -t golftracker-operator .`
# from the repository root. charts/golftracker-operator runs it as `golftracker-operator run`.
# Profile release-small (Cargo.toml): the operator waits on the API server, so its code is
# built for size; its resident memory is mostly that code.

FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --profile release-small --locked -p golftracker-operator --bin golftracker-operator \
 && install -D target/release-small/golftracker-operator /out/golftracker-operator

# glibc, libgcc and CA certificates, no shell or package manager; user 65532 (nonroot).
# tests/tests/images.rs checks the binary links nothing beyond glibc and libgcc.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/golftracker-operator /usr/local/bin/golftracker-operator
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/golftracker-operator"]
CMD ["run"]
