#!/usr/bin/env bash
# Runs one fuzz target under AFL++ for a given time, or every target.
#
#   fuzz/run.sh TARGET SECONDS     e.g. fuzz/run.sh share 600
#   fuzz/run.sh all SECONDS        each target in turn (what .ci/run does)
#
# Targets: codec miner_message pool_message share proxy_header config.
# Needs cargo-afl (`cargo install cargo-afl --locked`, which builds AFL++);
# installed here if missing. The instrumented build goes to target/afl so
# it does not disturb the normal one. Findings land in
# target/afl/out/TARGET; crashing inputs are copied to fuzz/crashes/TARGET
# (commit them once fixed: `cargo test -p hashsplit-fuzz` replays them) and
# the script then exits 1. It prints AFL's figures for each run.
set -euo pipefail
cd "$(dirname "$0")/.."

TARGETS="codec miner_message pool_message share proxy_header config"
target=${1:?usage: fuzz/run.sh TARGET|all SECONDS}
seconds=${2:?usage: fuzz/run.sh TARGET|all SECONDS}

if ! cargo afl --version >/dev/null 2>&1; then
    cargo install cargo-afl --locked
fi
# Builds AFL++ for this toolchain once; says so (and fails) when it already is.
cargo afl config --build >/dev/null 2>&1 || true

out=target/afl
cargo afl build --release --locked -p hashsplit-fuzz --features afl --bins --target-dir "$out" 2>&1 \
    | grep -Ev '^\s+(Compiling|Checking)' || true
test -x "$out/release/codec" || { echo "fuzz build failed" >&2; exit 1; }

# A shared machine: no CPU binding, no frequency checks, no screen.
export AFL_NO_AFFINITY=1 AFL_SKIP_CPUFREQ=1 AFL_NO_UI=1 AFL_QUIET=1
export AFL_I_DONT_CARE_ABOUT_MISSING_CRASHES=1 AFL_SKIP_CRASHES=1

run_one() {
    local name=$1 dir="$out/out/$1"
    rm -rf "$dir"
    mkdir -p "$dir"
    cargo afl fuzz -i "fuzz/corpus/$name" -o "$dir" -V "$seconds" -- "$out/release/$name" \
        >"$dir/log.txt" 2>&1 || { tail -20 "$dir/log.txt" >&2; return 1; }
    local stats="$dir/default/fuzzer_stats"
    stat() { awk -F' *: *' -v key="$1" '$1 == key { print $2 }' "$stats"; }
    echo "$name: $(stat execs_done) execs in $(stat run_time) s, $(stat execs_per_sec) execs/s," \
        "coverage $(stat bitmap_cvg) ($(stat edges_found)/$(stat total_edges) edges)," \
        "corpus $(stat corpus_count), crashes $(stat saved_crashes), hangs $(stat saved_hangs)"
    local found=("$dir"/default/crashes/id:* "$dir"/default/hangs/id:*)
    if [ -e "${found[0]}" ]; then
        mkdir -p "fuzz/crashes/$name"
        cp "${found[@]}" "fuzz/crashes/$name/"
        echo "$name: inputs that crash or hang copied to fuzz/crashes/$name" >&2
        return 1
    fi
}

status=0
if [ "$target" = all ]; then
    for name in $TARGETS; do run_one "$name" || status=1; done
else
    run_one "$target" || status=1
fi
exit $status
