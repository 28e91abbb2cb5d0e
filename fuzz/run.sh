#!/usr/bin/env bash
# Run every fuzz target of coffer for SECONDS each (default 20: the smoke run
# .ci/run does; docs/reliability.md reports a 10-minute run of each).
#
#   fuzz/run.sh            # smoke: 20 s per target
#   fuzz/run.sh 600        # long run: 10 min per target
#   fuzz/run.sh 600 env_file config
#
# Needs the nightly toolchain (rustup; preinstalled on the project's
# machines) and cargo-fuzz (installed into ~/.cargo/bin when missing). Builds
# without a sanitizer (`-s none`): the parsers are safe Rust, so libFuzzer's
# coverage guidance and Rust's own checks (panics, overflow, bounds, debug
# assertions) are what finds bugs; ASan would only halve the speed.
# New inputs land in fuzz/corpus/<target>/ (minimize before committing:
# `cargo +nightly fuzz cmin -s none <target>`); a crash leaves its input in
# fuzz/artifacts/<target>/ and fails this script. `cargo test --lib fuzzing`
# replays every committed corpus on stable.
set -euo pipefail
cd "$(dirname "$0")"
secs="${1:-20}"
# FUZZ_SEED fixes libFuzzer's seed (CI: the same inputs on every run of the
# same code, so a smoke run cannot fail at random); 0 = a new seed each run.
seed="${FUZZ_SEED:-0}"
shift || true
if ! rustup toolchain list | grep -q '^nightly'; then
    echo "fuzz/run.sh: no nightly toolchain (rustup toolchain install nightly)" >&2
    exit 1
fi
if ! command -v cargo-fuzz >/dev/null; then
    env -u CARGO_TARGET_DIR cargo install cargo-fuzz --version 0.13.1 --locked
fi
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(cargo +nightly fuzz list)
fi
cargo +nightly fuzz build -s none
log="$(mktemp)"
for t in "${targets[@]}"; do
    printf '=== fuzz %s (%s s)\n' "$t" "$secs"
    # -max_len 64 KiB covers every input these parsers take whole; the
    # final stats give executions, coverage (cov, ft) and peak RSS.
    if ! cargo +nightly fuzz run -s none "$t" -- -max_total_time="$secs" -max_len=65536 -seed="$seed" \
        -rss_limit_mb=2048 -timeout=10 -print_final_stats=1 >"$log" 2>&1; then
        tail -n 40 "$log"
        echo "fuzz/run.sh: $t failed; the input is in fuzz/artifacts/$t/" >&2
        exit 1
    fi
    grep -E '^#[0-9]+ +DONE|^stat::(number_of_executed_units|peak_rss_mb)' "$log" || true
done
rm -f "$log"
