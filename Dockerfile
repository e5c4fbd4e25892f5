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
# Only what `cargo build` reads (see .dockerignore): the package, the samples compiled into the
# binary, and the manifests and sources of the workspace's two test crates, without which cargo
# cannot load the workspace or check Cargo.lock. Only the router's binary is built.
# scripts/check-image-context checks these lines against .dockerignore without a container engine.
COPY Cargo.toml Cargo.lock README.md ./
COPY src ./src
COPY benches ./benches
COPY examples ./examples
COPY tests/fake-apiserver/Cargo.toml ./tests/fake-apiserver/
COPY tests/fake-apiserver/src ./tests/fake-apiserver/src
COPY tests/fake-servicebus/Cargo.toml ./tests/fake-servicebus/
COPY tests/fake-servicebus/src ./tests/fake-servicebus/src
COPY tests/fake-autoscaling/Cargo.toml ./tests/fake-autoscaling/
COPY tests/fake-autoscaling/src ./tests/fake-autoscaling/src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --package eviction-router --bin eviction-router \
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
