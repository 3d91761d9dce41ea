#!/usr/bin/env bash
# Writes BENCHMARKS.md from the release benchmark programs (called by `make bench`, which
# builds them and starts the local stack). Every figure is measured in this one run.
set -euo pipefail
bin=${CARGO_TARGET_DIR:?}/release
cache=${ORDO_CACHE:?}
out=${1:-BENCHMARKS.md}
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` on $(date -u +%F): $(nproc) cores, $(uname -sm), $(rustc --version | cut -d' ' -f1-2), tansu $(cat "$cache/tansu/.version"), moto $("$cache/venv/bin/python" -c 'import moto; print(moto.__version__)'). Each figure is the median of several runs in this session, with their range in brackets; compare ratios, not absolute rates, across machines. The machine is small and shared: the load drivers run on the same two cores as what they measure."
  echo
  echo "## Plugin: one \`merge\` call"
  echo
  echo "The same rule natively, as a sandboxed component in Ordo's host, and as an Extism plugin in the \`extism\` crate. Goals: Ordo ≤ 3× native, and faster than Extism."
  echo
  "$bin/plugin_bench"
  echo
  echo "## Ingest: \`POST /patientprofile\`"
  echo
  echo "Goal: Ordo ≥ 0.5× the HTTP ceiling."
  echo
  "$bin/ingest_bench"
  echo
  echo "## Consume: topic to table"
  echo
  echo "Each topic is filled before the consumers start: this is a consumer catching up. On moto (the local DynamoDB API, throughput-bound at about 430 writes/s): uniform is 1,000 keys × 3 updates, interleaved; bursty is 100 keys × 20 updates back to back. On the model and the ceiling: 1,000 keys × 50 updates, interleaved (uniform) or back to back (bursty). Each workload is produced once; every run reads it from the start in consumer groups of its own. The baseline handles one event at a time (read, merge, write, commit), like the original Go service; on the slow stores its steady rate is taken over its first 1,000 events. Ordo folds the queued updates of a key into one write and merges against the record it wrote last without reading it again. The 4 ms store is a **model** of a latency-bound DynamoDB (every request takes 4 ms, any number at once), not a measurement of it; the no-latency store is the consumer's own ceiling. Goals on the model: Ordo ≥ 10× the baseline and ≥ 0.5× its ceiling."
  echo
  "$bin/consume_bench"
  echo
  echo "## The engine on the local stack: latency, memory, write cost"
  echo
  echo "Goals: p99 POST → visible < 50 ms on loopback; ≤ 0.3 DynamoDB writes per event on bursts."
  echo
  "$bin/system_bench"
} > "$out"
cat "$out"
