# syntax=docker/dockerfile:1
#
# eviction-router container image.
#
#   docker build -t eviction-router:dev .
#
# The build stage compiles the release binary with the locked dependency versions; the runtime
# stage is distroless (glibc, CA certificates, no shell) and runs as the unprivileged user 65532,
# which the Helm chart's securityContext expects.

FROM rust:1-bookworm AS build
WORKDIR /src
# Only what `cargo build` reads (see .dockerignore).
COPY Cargo.toml Cargo.lock README.md ./
COPY src ./src
COPY benches ./benches
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked \
    && install -D -m 0755 target/release/eviction-router /out/eviction-router

FROM gcr.io/distroless/cc-debian12:nonroot
LABEL org.opencontainers.image.title="eviction-router" \
      org.opencontainers.image.description="Routes cloud Spot interruption and maintenance signals into the Kubernetes cluster." \
      org.opencontainers.image.licenses="Apache-2.0"
# On PATH, so that `kubectl exec deploy/eviction-router -- eviction-router inject ...` works.
COPY --from=build /out/eviction-router /usr/local/bin/eviction-router
USER 65532:65532
EXPOSE 8080
ENTRYPOINT ["/usr/local/bin/eviction-router"]
CMD ["run", "--config", "/etc/eviction-router/config.yaml"]
