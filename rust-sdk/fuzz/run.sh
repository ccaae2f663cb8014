#!/usr/bin/env bash
# Runs the connection fuzz target of the Rust SDK (FUZZING.md at the repository's root).
#
#   rust-sdk/fuzz/run.sh [connection] [LIBFUZZER FLAGS...]   fuzz: corpus/connection grows,
#                                                            seeds/connection is read
#   rust-sdk/fuzz/run.sh connection --minimize               merge corpus and seeds into a
#                                                            minimal corpus/connection
#   rust-sdk/fuzz/run.sh connection --check                  every corpus and regression input once
#
# The seeds are written by `UPDATE_FUZZ_SEEDS=1 cargo test -p tether --test fuzz_corpus`.
# Toolchain, sanitizer and limits as in spec/fuzz/run.sh: `cargo +nightly` when a nightly
# toolchain is installed, else stable with RUSTC_BOOTSTRAP=1; no sanitizer unless FUZZ_SANITIZER
# says; one job under `nice -n 10`, 512 MB RSS limit. FUZZ_NO_TRACE_COMPARES=1 builds without
# comparison tracing (faster, coarser guidance; FUZZING.md says which runs used it).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
target="${1:-connection}"
[ $# -gt 0 ] && shift

if ! command -v cargo-fuzz >/dev/null 2>&1; then
    echo "run.sh: installing cargo-fuzz" >&2
    cargo install cargo-fuzz
fi
if cargo +nightly --version >/dev/null 2>&1; then
    toolchain=(+nightly)
    echo "run.sh: toolchain: nightly ($(cargo +nightly --version))" >&2
else
    toolchain=()
    export RUSTC_BOOTSTRAP=1
    echo "run.sh: toolchain: stable with RUSTC_BOOTSTRAP=1 ($(cargo --version)); no nightly installed" >&2
fi
sanitizer="${FUZZ_SANITIZER:-none}"
flags=(--fuzz-dir . --sanitizer "$sanitizer" --release)
if [ -n "${FUZZ_NO_TRACE_COMPARES:-}" ]; then
    flags+=(--no-trace-compares)
fi
fuzz=(cargo "${toolchain[@]}" fuzz run "${flags[@]}" "$target")

mkdir -p "corpus/$target" "regressions/$target" "seeds/$target"
case "${1:-}" in
--minimize)
    tmp="$(mktemp -d)"
    trap 'rm -rf "$tmp"' EXIT
    "${fuzz[@]}" "$tmp" "corpus/$target" "seeds/$target" -- -merge=1 -jobs=1 -workers=1
    rm -f "corpus/$target"/*
    cp "$tmp"/* "corpus/$target/"
    echo "run.sh: corpus/$target: $(ls "corpus/$target" | wc -l) files, $(du -sh "corpus/$target" | cut -f1)" >&2
    ;;
--check)
    "${fuzz[@]}" "corpus/$target" "regressions/$target" -- -runs=0
    ;;
*)
    exec nice -n 10 "${fuzz[@]}" "corpus/$target" "seeds/$target" -- \
        -rss_limit_mb=512 -print_final_stats=1 "$@"
    ;;
esac
