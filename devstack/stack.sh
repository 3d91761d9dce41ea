#!/usr/bin/env bash
# The local stack: a Kafka-protocol broker on 127.0.0.1:9092 and a DynamoDB API on
# 127.0.0.1:4566.
#
#   stack.sh start    install what is missing (once, into the cache), start, wait until ready
#   stack.sh stop     stop what this script started
#   stack.sh status   say what answers
#   stack.sh install  install only
#
# With a Docker engine that answers, `start` runs localstack-compose.yml (Apache Kafka,
# LocalStack, Kafka UI). Without one, it runs natively: tansu (from crates.io, storage in
# SQLite so topics survive a restart) and moto's server (from PyPI). Installs, data, pids and
# logs live in ORDO_CACHE (default ~/.cache/ordo), outside the checkout.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
cache=${ORDO_CACHE:-$HOME/.cache/ordo}
venv=$cache/venv
tansu_version=0.6.0
tansu=$cache/tansu/bin/tansu
run=$cache/run
logs=$cache/logs
kafka_addr=127.0.0.1:9092
dynamodb_url=http://127.0.0.1:4566
ready_timeout=${ORDO_STACK_TIMEOUT:-60}

say() { printf 'devstack: %s\n' "$*"; }
die() { printf 'devstack: error: %s\n' "$*" >&2; exit 1; }

docker_answers() {
  [ "${ORDO_STACK:-auto}" != native ] && command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

install_venv() {
  local stamp=$venv/.requirements
  if [ -x "$venv/bin/moto_server" ] && cmp -s "$here/requirements.txt" "$stamp"; then
    return
  fi
  say "installing moto[server] and the AWS CLI into $venv (once)"
  python3 -m venv "$venv" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check -r "$here/requirements.txt" \
    || die "pip install failed; see the output above"
  cp "$here/requirements.txt" "$stamp"
}

install_tansu() {
  if [ -x "$tansu" ] && [ "$(cat "$cache/tansu/.version" 2>/dev/null)" = "$tansu_version" ]; then
    return
  fi
  say "building the tansu broker $tansu_version into $cache/tansu (once; about 10 minutes on 2 cores)"
  mkdir -p "$logs"
  # A target dir of its own, outside the checkout, so the build is not redone after a failure.
  if ! CARGO_TARGET_DIR=$cache/tansu-build cargo install tansu --version "$tansu_version" --locked \
      --features libsql,dynostore --root "$cache/tansu" >"$logs/tansu-install.log" 2>&1; then
    tail -n 30 "$logs/tansu-install.log" >&2
    die "cargo install tansu failed; full log: $logs/tansu-install.log"
  fi
  echo "$tansu_version" >"$cache/tansu/.version"
  rm -rf "$cache/tansu-build"
}

probe() { "$venv/bin/python" "$here/probe.py" "$@" 2>/dev/null; }

alive() { [ -f "$run/$1.pid" ] && kill -0 "$(cat "$run/$1.pid")" 2>/dev/null; }

# wait_ready NAME KIND ADDRESS: poll the protocol probe until it answers or time runs out.
wait_ready() {
  local name=$1 kind=$2 address=$3 deadline=$((SECONDS + ready_timeout)) answer
  while ! answer=$(probe "$kind" "$address"); do
    if [ -f "$run/$name.pid" ] && ! alive "$name"; then
      tail -n 20 "$logs/$name.log" >&2 || true
      die "$name exited during start-up; log: $logs/$name.log"
    fi
    if [ $SECONDS -ge $deadline ]; then
      "$venv/bin/python" "$here/probe.py" "$kind" "$address" || true
      tail -n 20 "$logs/$name.log" >&2 2>/dev/null || true
      die "$name did not answer within ${ready_timeout}s; log: $logs/$name.log"
    fi
    sleep 0.3
  done
  say "$name ready at $address ($answer)"
}

# launch NAME DIR CMD...: start CMD in DIR, detached, with its pid and log in the cache.
launch() {
  local name=$1 dir=$2
  shift 2
  mkdir -p "$run" "$logs" "$dir"
  (cd "$dir" && exec setsid "$@" >>"$logs/$name.log" 2>&1 </dev/null) &
  echo $! >"$run/$name.pid"
}

# tansu 0.6 has no index on its header table, so a broker slows down as it fills (see
# tansu_index.py); add it to the local broker's database, whether just started or not.
index_tansu() {
  local db=$cache/data/tansu/tansu.db
  if ! "$venv/bin/python" "$here/tansu_index.py" "$db" 2>>"$logs/tansu.log"; then
    say "warning: could not index $db (see $logs/tansu.log); the broker slows down as it fills"
  fi
}

start_native() {
  install_venv
  install_tansu
  if probe kafka "$kafka_addr" >/dev/null; then
    say "broker already answering at $kafka_addr"
  else
    if alive tansu; then
      # Running but not answering: tansu 0.6 can panic in its storage task and then refuse
      # every request while its process lives on. Restart it on the same data.
      say "tansu (pid $(cat "$run/tansu.pid")) answers nothing; restarting it"
      stop_one tansu
    fi
    say "starting tansu (log: $logs/tansu.log)"
    # A relative sqlite:// path: tansu doubles an absolute one. The data dir is the cwd.
    launch tansu "$cache/data/tansu" env STORAGE_ENGINE=sqlite://tansu.db \
      LISTENER_URL=tcp://$kafka_addr ADVERTISED_LISTENER_URL=tcp://$kafka_addr \
      CLUSTER_ID=ordo-local "$tansu" broker
    wait_ready tansu kafka "$kafka_addr"
  fi
  index_tansu
  if probe dynamodb "$dynamodb_url" >/dev/null; then
    say "DynamoDB API already answering at $dynamodb_url"
  else
    say "starting moto (log: $logs/moto.log)"
    launch moto "$cache/data/moto" "$venv/bin/moto_server" -H 127.0.0.1 -p 4566
    wait_ready moto dynamodb "$dynamodb_url"
  fi
}

start_docker() {
  install_venv
  say "Docker engine found: starting $root/localstack-compose.yml"
  docker compose -f "$root/localstack-compose.yml" up -d
  wait_ready kafka kafka "$kafka_addr"
  wait_ready localstack dynamodb "$dynamodb_url"
  say "Kafka UI: http://localhost:8080/"
}

stop() {
  if docker_answers && docker compose -f "$root/localstack-compose.yml" ps -q 2>/dev/null | grep -q .; then
    docker compose -f "$root/localstack-compose.yml" down
  fi
  local name
  for name in tansu moto; do
    stop_one "$name"
  done
}

# stop_one NAME: stop what this script started as NAME, if it runs.
stop_one() {
  local name=$1 pid
  if alive "$name"; then
    pid=$(cat "$run/$name.pid")
    say "stopping $name (pid $pid)"
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -KILL -- "-$pid" 2>/dev/null || true
  fi
  rm -f "$run/$name.pid"
}

status() {
  local rc=0 answer
  if [ -x "$venv/bin/python" ]; then
    if answer=$(probe kafka "$kafka_addr"); then say "Kafka    $kafka_addr: up ($answer)"; else say "Kafka    $kafka_addr: down"; rc=1; fi
    if answer=$(probe dynamodb "$dynamodb_url"); then say "DynamoDB $dynamodb_url: up ($answer)"; else say "DynamoDB $dynamodb_url: down"; rc=1; fi
  else
    say "not installed yet (make local-dev-stack installs it)"; rc=1
  fi
  for name in tansu moto; do
    alive "$name" && say "$name pid $(cat "$run/$name.pid"), log $logs/$name.log"
  done
  return $rc
}

case "${1:-}" in
  start) if docker_answers; then start_docker; else start_native; fi ;;
  stop) stop ;;
  status) status ;;
  install) install_venv; docker_answers || install_tansu ;;
  *) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
