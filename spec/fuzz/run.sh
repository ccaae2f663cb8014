#!/usr/bin/env bash
# Runs one fuzz target of tether-spec (FUZZING.md at the repository's root).
#
#   spec/fuzz/run.sh TARGET [LIBFUZZER FLAGS...]   fuzz: corpus/TARGET grows, seeds/TARGET is read
#   spec/fuzz/run.sh TARGET --minimize             merge corpus/TARGET and seeds/TARGET into a
#                                                  minimal corpus/TARGET (the committed one)
#   spec/fuzz/run.sh TARGET --check                run every corpus and regression input once
#
# TARGET is codec, message or message_structured. Default flags: one process (no -jobs, which
# would send the output to fuzz-N.log), 512 MB RSS limit,
# run until stopped (add -runs=N or -max_total_time=S). cargo-fuzz needs nightly flags: the
# script uses `cargo +nightly` when a nightly toolchain is installed, and otherwise stable with
# RUSTC_BOOTSTRAP=1 (which makes stable accept the -Z flags); it says which. FUZZ_SANITIZER
# picks the sanitizer (default none: safe Rust, and about 3x the executions of address).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
cd "$here"
target="${1:?usage: run.sh TARGET [--minimize|--check|LIBFUZZER FLAGS...]}"
shift

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
fuzz=(cargo "${toolchain[@]}" fuzz run --fuzz-dir . --sanitizer "$sanitizer" --release "$target")

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
