# AgentGate binaries (agentgate-node, agentgate-edge, agentgate-admin) in one minimal image.
#   docker build -t ghcr.io/agentgate/agentgate:0.1.0 .
# Every setting comes from flags or AGENTGATE_* environment variables (see deploy/k8s), so the
# image needs no entrypoint script and no shell: the manifests name the binary to run.

# --- build -------------------------------------------------------------------------------------
FROM rust:1.95-bookworm AS build
# libclang: bindgen for RocksDB; protoc: the gRPC contracts.
RUN apt-get update \
 && apt-get install -y --no-install-recommends libclang-dev protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# Cache the registry and target between builds (BuildKit); copy the binaries out of the cache.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p agentgate-node -p agentgate-edge -p agentgate-admin \
 && mkdir -p /out \
 && cp target/release/agentgate-node target/release/agentgate-edge target/release/agentgate-admin /out/

# --- run ---------------------------------------------------------------------------------------
# glibc and libstdc++ (RocksDB is C++), CA certificates, no shell, no package manager; runs as
# uid/gid 65532 ("nonroot"), matching the manifests' securityContext.
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/ /usr/local/bin/
USER 65532:65532
# Core: client gRPC, health/metrics, Raft peers. Edge: MCP, health/metrics.
EXPOSE 7400 7401 7402 7480 7481
# The core's RocksDB directory (a volume in Kubernetes).
VOLUME ["/data"]
ENTRYPOINT ["/usr/local/bin/agentgate-node"]
