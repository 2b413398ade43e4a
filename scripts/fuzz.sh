#!/usr/bin/env bash
# Runs each libFuzzer target (tests/fuzz/) for a bounded time and merges the inputs
# that reach new coverage into its corpus in the repository (tests/fuzz/corpus/<name>/).
# Used by `make fuzz`, which builds the targets into _build-fuzz/ first.
#
#   scripts/fuzz.sh BUILD_DIR SECONDS TARGET...   (SECONDS 0: only minimize the corpora)
#
# A target that crashes stops the run with its reproducer in BUILD_DIR/fuzz/artifacts/;
# replay it with BUILD_DIR/fuzz/fuzz_<name> <file>, fix, and add the file to the corpus.
# The last lines of each run (executions per second, coverage) are summed up at the end.
set -euo pipefail

build_dir=$1
seconds=$2
shift 2
root=$(cd "$(dirname "$0")/.." && pwd)
bin_dir=$build_dir/fuzz
artifacts=$bin_dir/artifacts
mkdir -p "$artifacts"

summary=()
for name in "$@"; do
  fuzzer=$bin_dir/fuzz_$name
  corpus=$root/tests/fuzz/corpus/$name
  [ -x "$fuzzer" ] || { echo "fuzz: $fuzzer is not built: run make fuzz" >&2; exit 1; }
  [ -d "$corpus" ] || { echo "fuzz: no corpus $corpus: add seed inputs there" >&2; exit 1; }
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/bbx-fuzz-$name.XXXXXX")
  log=$bin_dir/$name.log
  echo "fuzz: $name for ${seconds}s (log: $log)"
  # New inputs go to the scratch dir; the corpus is only read. -timeout: an input
  # taking longer than 30 s is a hang, reported as a crash.
  status=0
  [ "$seconds" -gt 0 ] || : >"$log"  # 0 s: only minimize the corpus
  [ "$seconds" -eq 0 ] || nice -n 10 "$fuzzer" -max_total_time="$seconds" -timeout=30 -max_len=8192 \
    -rss_limit_mb=4096 -print_final_stats=1 -artifact_prefix="$artifacts/$name-" \
    "$scratch" "$corpus" >"$log" 2>&1 || status=$?
  if [ "$status" -ne 0 ]; then
    tail -n 60 "$log" >&2
    echo "fuzz: $name failed (exit $status); reproducer in $artifacts/" >&2
    rm -rf "$scratch"
    exit 1
  fi
  # The corpus is minimized: the seeds and the crash reproducers (seed-*, crash-*)
  # stay, plus the fewest other inputs, old or new, that keep every edge reached
  # (-use_counters=0: hit counts do not count, which keeps the corpora small).
  minimized=$(mktemp -d "${TMPDIR:-/tmp}/bbx-fuzz-$name-min.XXXXXX")
  find "$corpus" -maxdepth 1 -type f \( -name 'seed-*' -o -name 'crash-*' \) -exec cp {} "$minimized"/ \;
  nice -n 10 "$fuzzer" -merge=1 -use_counters=0 -timeout=30 -max_len=8192 "$minimized" "$corpus" "$scratch" \
    >"$bin_dir/$name-merge.log" 2>&1
  find "$corpus" -maxdepth 1 -type f ! -name 'seed-*' ! -name 'crash-*' -delete
  find "$minimized" -maxdepth 1 -type f ! -name 'seed-*' ! -name 'crash-*' -exec mv {} "$corpus"/ \;
  rm -rf "$scratch" "$minimized"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -o 'cov: [0-9]*' "$log" | tail -n 1 | cut -d' ' -f2 || true)
  files=$(find "$corpus" -type f | wc -l)
  summary+=("$(printf '%-16s %10s runs %7s exec/s  cov %6s  corpus %5s files' \
    "$name" "${execs:-?}" "${rate:-?}" "${cov:-?}" "$files")")
done
echo "fuzz: done, no crash"
printf '  %s\n' "${summary[@]}"
