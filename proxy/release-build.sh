#!/bin/sh
# Builds sluice-proxy as it ships (the Docker image, the benchmarks): a release build of the
# proxy alone, optimised with its execution profile (proxy/pgo/sluice-proxy.profdata, see
# proxy/pgo/README.md) and its code laid out by proxy/link-order.txt (proxy/build.rs).
#
# Usage: proxy/release-build.sh [CARGO BUILD ARGS...]    e.g. --locked
#   The binary is target/release/sluice-proxy (with --target T: target/T/release/). cargo runs
#   in the repository's root: a relative --target-dir or CARGO_TARGET_DIR is taken from there.
#   SLUICE_PGO=0  build without the profile (the same as `cargo build --release -p sluice-proxy`)
#   RUSTFLAGS or CARGO_ENCODED_RUSTFLAGS  kept, with the profile's flag added. Flags set in a
#                 cargo config file (build.rustflags, target.<triple>.rustflags) are not used
#                 while either variable is set (cargo's rule): give them in RUSTFLAGS instead.
#
# The profile is a file of this repository: nothing but cargo is needed here. rustc takes it
# with -Cprofile-use, which cargo passes only through RUSTFLAGS, not from a package's own
# settings; and the path must be absolute, because cargo runs rustc for dependencies in their
# own folders. Hence this script rather than a line in .cargo/config.toml.
set -eu
root=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
profile=$root/proxy/pgo/sluice-proxy.profdata

if [ "${SLUICE_PGO:-1}" != 0 ]; then
    if [ ! -f "$profile" ]; then
        echo "release-build.sh: $profile is missing: regenerate it with benches/e2e/pgo.sh," \
            "or build without it with SLUICE_PGO=0" >&2
        exit 1
    fi
    # CARGO_ENCODED_RUSTFLAGS (flags separated by 0x1f) keeps a path with spaces in one flag;
    # it takes precedence over RUSTFLAGS, so flags given either way are carried over.
    sep=$(printf '\037')
    flags=
    if [ -n "${CARGO_ENCODED_RUSTFLAGS+set}" ]; then
        [ -z "$CARGO_ENCODED_RUSTFLAGS" ] || flags="$CARGO_ENCODED_RUSTFLAGS$sep"
    else
        set -f # RUSTFLAGS is split on spaces, never expanded as file names
        for flag in ${RUSTFLAGS:-}; do flags="$flags$flag$sep"; done
        set +f
    fi
    CARGO_ENCODED_RUSTFLAGS="$flags-Cprofile-use=$profile"
    export CARGO_ENCODED_RUSTFLAGS
    unset RUSTFLAGS
fi
cd "$root"
exec cargo build --release -p sluice-proxy "$@"
