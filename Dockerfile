# The causeway image: one static binary (musl) on distroless, non-root.
#
#   docker build -t causeway/causeway:0.1.0 .
#
# Every part runs from it with its subcommand (`causeway stub|agent|dns|scheduler …`), as the
# charts in charts/ do. `causeway testbed` needs the Go-built Kubernetes binaries and is not
# meant for the image.
ARG RUST_VERSION=1

FROM rust:${RUST_VERSION}-bookworm AS build
# ring (rustls' crypto) compiles C and assembly: musl-gcc for the static target.
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/* \
 && rustup target add x86_64-unknown-linux-musl
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=musl-gcc
WORKDIR /src
COPY . .
RUN cargo build --release --locked --target x86_64-unknown-linux-musl --bin causeway \
 && cp target/x86_64-unknown-linux-musl/release/causeway /causeway

# static: no libc needed; has CA certificates (dns https probes) and a nonroot user.
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /causeway /usr/local/bin/causeway
# The charts run it as 65532 (distroless' nonroot) with a read-only root filesystem.
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/causeway"]
