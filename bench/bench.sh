#!/usr/bin/env bash
# Writes BENCHMARKS.md from the release benchmark programs (called by `make bench`, which
# builds them and starts the local stack). Every figure is measured in this one run.
set -euo pipefail
bin=${CARGO_TARGET_DIR:?}/release
cache=${ORDO_CACHE:?}
out=${1:-BENCHMARKS.md}
root=$(cd "$(dirname "$0")/.." && pwd)
# Each run's raw figures as CSV (bench/src/results.rs), in a folder named for when and at
# which commit they were measured.
export ORDO_BENCH_RESULTS="$root/bench/results/$(date -u +%Y%m%dT%H%M%SZ)-$(git -C "$root" rev-parse --short HEAD)"
mkdir -p "$ORDO_BENCH_RESULTS"
# wasmtime as Ordo builds it (the workspace's) and as the `extism` crate pins it.
wasmtime_versions=$(awk '/^name = "wasmtime"$/{getline; gsub(/version = |"/, ""); print}' "$root/Cargo.lock" | sort -V)
ordo_wasmtime=$(grep -E '^wasmtime = ' "$root/Cargo.toml" | grep -oE '[0-9]+' | head -1)
ordo_wasmtime=$(echo "$wasmtime_versions" | grep -E "^$ordo_wasmtime\." | tail -1)
extism_wasmtime=$(echo "$wasmtime_versions" | grep -vx "$ordo_wasmtime" | tail -1)
# Each benchmark program gets a broker of its own on a fresh database: tansu keeps every
# message in SQLite, and what one benchmark leaves behind would slow the next (and the shared
# local stack the tests use).
private_port=19192
broker_dir=""
broker_pid=""
stop_broker() {
  if [ -n "$broker_pid" ]; then
    kill -TERM "$broker_pid" 2>/dev/null || true
    wait "$broker_pid" 2>/dev/null || true
  fi
  [ -n "$broker_dir" ] && rm -rf "$broker_dir"
  broker_pid=""
  broker_dir=""
}
trap stop_broker EXIT
fresh_broker() {
  stop_broker
  broker_dir=$(mktemp -d "${TMPDIR:-/tmp}/ordo-bench-tansu.XXXXXX")
  (cd "$broker_dir" && exec env STORAGE_ENGINE=sqlite://tansu.db \
    LISTENER_URL=tcp://127.0.0.1:$private_port ADVERTISED_LISTENER_URL=tcp://127.0.0.1:$private_port \
    CLUSTER_ID=ordo-bench "$cache/tansu/bin/tansu" broker >"$broker_dir/tansu.log" 2>&1) &
  broker_pid=$!
  for _ in $(seq 100); do
    "$cache/venv/bin/python" "$root/devstack/probe.py" kafka "127.0.0.1:$private_port" >/dev/null 2>&1 && break
    sleep 0.2
  done
  # The index tansu 0.6 lacks (see devstack/tansu_index.py), as the local stack has it.
  "$cache/venv/bin/python" "$root/devstack/tansu_index.py" "$broker_dir/tansu.db" ||
    echo "bench: could not index the broker's database; figures will sink as it fills" >&2
  export KAFKA_BROKERS=127.0.0.1:$private_port
}
{
  echo "# Benchmarks"
  echo
  echo "Written by \`make bench\` on $(date -u +%F): $(nproc) cores, $(uname -sm), $(rustc --version | cut -d' ' -f1-2), tansu $(cat "$cache/tansu/.version"), moto $("$cache/venv/bin/python" -c 'import moto; print(moto.__version__)'). Every figure is the median of at least three runs in this one session, with their range (min–max) in brackets (the latency sweep excepted: one run of a minute per rate, each quantile with its sample count), and every ratio is between two figures measured in the same run; compare ratios, not absolute rates, across machines. The machine is small and shared: the load drivers, the broker (tansu, storing in SQLite; each benchmark program gets one of its own on a fresh database, with the index tansu 0.6 lacks added: \`devstack/tansu_index.py\`) and the emulator run on the same two cores as what they measure. A goal marked **NOT met** is reported as measured, with the reason where it is known; no workload was changed after its figure was read."
  echo
  echo "## Plugin: one \`merge\` call"
  echo
  echo "The same rule natively, as a sandboxed component called the way the consumer calls it, and as an Extism plugin in the \`extism\` crate. Ordo runs wasmtime ${ordo_wasmtime:-?}; Extism 1.30 brings its own wasmtime ${extism_wasmtime:-?} (the newest Extism needs a newer Rust than this workspace's). Goals: Ordo ≤ 3× native, and faster than Extism."
  echo
  "$bin/plugin_bench"
  echo
  echo "## Plugin languages: the same policy in Rust, Python and JavaScript"
  echo
  echo "The last-writer-wins policy natively, as a Rust component, and written in Python (componentize-py $("$cache/py-plugins/bin/pip" show componentize-py 2>/dev/null | awk '/^Version/{print $2}')) and JavaScript (componentize-js $(node -p "require('$cache/js-plugins/node_modules/@bytecodealliance/componentize-js/package.json').version" 2>/dev/null)), each deciding the same as the others (checked before timing). What a restart costs is the load: compiled from the file, or read from the on-disk cache of compiled plugins (\`--plugin-cache\`). No goal was set before measuring; these are the figures a pipeline's limits and a team's choice of language start from."
  echo
  "$bin/languages_bench"
  echo
  echo "## Ingest: events into the topic, acknowledged"
  echo
  echo "One POST per event, bulk NDJSON, and \`ordo load\`, each against rdkafka's own producer with every message in flight on the same broker in the same run, without headers and with the request-id header Ordo adds. Goals: bulk ≥ 0.8× and \`ordo load\` ≥ 0.8× rdkafka all in flight with the same header."
  echo
  fresh_broker >&2
  "$bin/ingest_bench"
  echo
  echo "## Consume: topic to table"
  echo
  echo "Each topic is filled before the consumers start: a consumer catching up. The designs read the same topic, one after another in groups of their own, the order turned by one each run, so the same events meet the same store in the same session. **Ordo** folds the queued updates of a key into one write and merges against the record it wrote last without reading it again. Its peers: the **sequential baseline** handles one event at a time (read, merge, write, commit), like the original Go service; the **key-ordered parallel consumer** (Rust, \`bench/src/peers/keyed.rs\`) is the KEY ordering mode of Confluent's Parallel Consumer, one event per key at a time and as many keys at once as Ordo's concurrency, each event read, merged through the same plugin and conditionally written on its own (no folding, no record cache), offsets committed only after the write, so that Ordo is not compared only with a design that is sequential by construction; the **Quix Streams app** (Python, quixstreams $("$cache/quix/bin/pip" show quixstreams 2>/dev/null | awk '/^Version/{print $2}'), \`bench/peers/quix_app.py\`) is the job as a Python team would write it by hand, one conditional put per message (the record is absent or its \`UpdatedAt\` is older) and no read. The **no-op consumer** reads the same topic and does nothing, the physical ceiling of any consumer here. Three shapes, fixed before any figure was read: uniform (every key once), bursty (20 updates of a key back to back) and shuffled (5 updates of a key with increasing \`UpdatedAt\`, produced keyed in a seeded shuffle, so they reach their partition out of order, as in the seed's bug). After each design the benchmark reads its table itself and counts the **stale records**, keys that do not hold their newest update. Every design reaches its store over DynamoDB's API (the Rust designs with the AWS SDK, the Python job with boto3). Writes and requests per event are counted on the store's side, not taken from the designs: on moto by a counting proxy that every design goes through, on the model by the model itself. The 4 ms store is a **model** of a latency-bound DynamoDB (\`model_dynamo\`: DynamoDB's protocol, every request answered after 4 ms, any number at once, a process of its own per design and run), not a measurement of it. moto is the local DynamoDB API, throughput-bound at about 430 writes/s. Goals on the model, set before the peers were added: Ordo ≥ 0.5× the no-op ceiling on the bursty shape, ≥ 10× the baseline on the uniform and bursty shapes. No goal was set for the peers or the shuffled shape. Last, the change feed's cost: one consumer with and without \`changes_topic\`, on the shape where every event publishes a change. (Several engines in one group are a later section's, as separate processes.)"
  echo
  fresh_broker >&2
  "$bin/consume_bench"
  echo
  echo "## Catching up: the keys applied at once against the store's own ceiling"
  echo
  echo "A replica catching up on new patients, with the keys applied at once following the consumer's throughput (the default since issue 34) and fixed at \`concurrency\` 64 (\`adaptive_concurrency = false\`, every earlier release), against what the store takes at all: moto's ceiling, measured in the same run by a plain client (the SDK's conditional put, no Kafka, no plugin) at its best concurrency of a sweep. Goals: on moto, Ordo ≥ 0.9× moto's ceiling; on the 4 ms model, adaptive ≥ 0.95× fixed (no loss)."
  echo
  fresh_broker >&2
  "$bin/catchup_bench"
  echo
  echo "## Scaling: engines as separate processes"
  echo
  echo "1, 2 and 3 real \`ordo run --role apply\` processes in one consumer group, each with its own Kafka consumer, applier and record cache, on a topic of their own that the bench fills once every member holds partitions (every event a write), against the DynamoDB-wire model (\`model_dynamo\`, a process of its own answering every DynamoDB request after 4 ms, any number at once), which counts each engine's writes from outside it. On this machine every engine shares the same two cores with the broker, the model and the bench, so the table shows whether the members of a group divide the work without serialising one another, not what engines on machines of their own would reach; that is worked out on paper below from one engine's measured rate and CPU. Goal: 3 engines ≥ 2× one."
  echo
  fresh_broker >&2
  "$bin/scaling_bench"
  echo
  echo "## Latency: POST → visible, against offered rate"
  echo
  echo "The real \`ordo\` binary (ingest and apply in one process) on the DynamoDB-wire model, measured as HdrHistogram users measure latency: requests offered open loop at a sweep of rates, each timed from the instant it was due to the instant the model wrote its record, p50, p99, p999 and max at each rate with their sample counts, and the **knee**: the highest rate whose p99 is under 50 ms. Goal: p99 < 50 ms at 500 requests/s, so 500/s must be under the knee. The plot is drawn by this run."
  echo
  fresh_broker >&2
  ORDO_BENCH_PLOT="$root/bench/results/latency.svg" "$bin/latency_bench"
  echo
  echo "## The engine on the local stack: memory, write cost"
  echo
  echo "Goal: ≤ 0.3 DynamoDB writes per event on bursts."
  echo
  fresh_broker >&2
  "$bin/system_bench"
  stop_broker
} > "$out"
cat "$out"
