#!/usr/bin/env bash
# profile.sh - where coffer's server CPU goes, per workload (reveal, inject):
# syscalls per request (strace -c -f over PROFILE_REQS=200 sequential requests)
# and a perf cpu-clock profile with DWARF call graphs under wrk -c PROFILE_CONNS (8) for
# PROFILE_S=4 s (full report kept in $OUT/perf_<workload>.txt). Needs perf and
# strace; run as root (the server makes itself non-dumpable, so only a
# CAP_SYS_PTRACE tracer may attach). Profiling inflates syscall-heavy paths
# (perf records every mmap/mprotect event): read the split, not the absolute.
#
#   bench/profile.sh              # BACKEND, SERVER_CPUS, WRK_CPUS, WORKLOADS, OUT as in run.sh
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
cd "$(dirname "$HERE")"
if [ "${BUILD:-1}" = "1" ]; then cargo build --release >&2; fi
for t in perf strace wrk; do command -v "$t" >/dev/null || { echo "$t is required" >&2; exit 1; }; done
exec python3 "$HERE/cofferbench.py" profile
