# sluice in one small image: `sluice-proxy` (the default entrypoint) and `sluice-control`.
#
#   docker build -t registry.example.com/sluice:0.1.0 .
#   docker run --rm -p 8080:8080 -v "$PWD/examples:/etc/sluice:ro" \
#       registry.example.com/sluice:0.1.0 --config /etc/sluice/quickstart.yaml
#   docker run --rm --entrypoint sluice-control registry.example.com/sluice:0.1.0 --help
#
# In Kubernetes, `args:` replace the default arguments of sluice-proxy, and
# `command: [sluice-control]` runs the control (examples/kubernetes/).
# The image holds no configuration and no secret: mount sluice.yaml, certificates and the
# control's tokens file at run time (ConfigMap, Secret).

# The exact release proxy/link-order.txt was generated with (its first line): mangled names
# carry a hash of the compiler's version, so another rustc builds a proxy whose code is not laid
# out by use (idle RSS about 10 MiB instead of 7; docs/operations.md, Sizing).
ARG RUST_VERSION=1.95.0

# --- build: the workspace's release profile (fat LTO, one codegen unit) -----------------------
FROM docker.io/library/rust:${RUST_VERSION}-slim-bookworm AS build
# jemalloc (sluice-proxy's allocator) is built from source: it needs make.
RUN apt-get update \
    && apt-get install -y --no-install-recommends make \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The proxy is built on its own, as it ships (proxy/release-build.sh: optimised with its
# execution profile, proxy/pgo/): built with the control, cargo would resolve the shared
# dependencies' features for both, which renames most of the functions link-order.txt lists.
RUN proxy/release-build.sh --locked \
    && install -D -m 0755 target/release/sluice-proxy /out/sluice-proxy \
    && cargo build --release --locked -p sluice-control \
    && install -D -m 0755 target/release/sluice-control /out/sluice-control

# --- run: glibc and libgcc only, no shell, no package manager ----------------------------------
FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /out/sluice-proxy /out/sluice-control /usr/local/bin/
# distroless's `nonroot` user; matches runAsUser/fsGroup 65532 in examples/kubernetes/.
USER 65532:65532
# Listener (examples use 8080 or 15001), proxy admin, control admin.
EXPOSE 8080 9901 9902
ENTRYPOINT ["/usr/local/bin/sluice-proxy"]
CMD ["--config", "/etc/sluice/sluice.yaml"]
