#!/usr/bin/env bash
# Start or stop a real two-node Ray cluster on loopback (a head raylet and a second worker raylet),
# the cluster the engine tests (tests/test_engine_ray.py) and `--engine ray --address` run against.
#
#   scripts/ray_cluster.sh start   # prints `export HYBRIDFACE_RAY_ADDRESS=127.0.0.1:PORT`
#   scripts/ray_cluster.sh stop    # kills exactly the processes this script started
#   scripts/ray_cluster.sh status
#
# Settings (environment): HYBRIDFACE_RAY_PORT (default 6391), HYBRIDFACE_RAY_DIR (default
# /tmp/hybridface-ray-$PORT; holds the address file, logs and each node's --temp-dir),
# HYBRIDFACE_RAY_OBJECT_STORE (bytes per node, default 300000000), RAY_AUTH_MODE (default
# disabled: loopback only; nodes joined later, as tests/test_engine_ray.py does, must match).
# Each node is started in its own session (setsid); `stop` kills every process of those sessions
# by pid, so other Ray instances on the machine (`ray stop` would kill them all) are left alone.
set -euo pipefail

PORT=${HYBRIDFACE_RAY_PORT:-6391}
DIR=${HYBRIDFACE_RAY_DIR:-/tmp/hybridface-ray-$PORT}
STORE=${HYBRIDFACE_RAY_OBJECT_STORE:-300000000}
ADDRESS="127.0.0.1:$PORT"
export RAY_USAGE_STATS_ENABLED=0
# A loopback test cluster without token authentication. Ray >= 2.5x turns token auth on for a
# head node whenever ~/.ray/auth_token exists (any local `ray.init()` creates it) but not for a
# joining worker node, which then fails with InvalidAuthToken; set the mode explicitly for both.
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-disabled}

# start_node NAME ARGS... : run `ray start` in a new session, record that session id.
start_node() {
    local name=$1; shift
    mkdir -p "$DIR/$name"
    setsid ray start --num-cpus 1 --node-ip-address 127.0.0.1 --temp-dir "$DIR/$name" \
        --object-store-memory "$STORE" --disable-usage-stats "$@" >"$DIR/$name.log" 2>&1 &
    local pid=$!
    if ! wait "$pid"; then
        echo "ray_cluster: 'ray start' of the $name node failed; see $DIR/$name.log:" >&2
        tail -n 20 "$DIR/$name.log" >&2
        return 1
    fi
    local raylet sid
    raylet=$(pgrep -f -n "raylet/raylet .*$DIR/$name/session_" || true)
    if [[ -z "$raylet" ]]; then
        echo "ray_cluster: no raylet found for the $name node (see $DIR/$name.log)" >&2
        return 1
    fi
    sid=$(ps -o sid= -p "$raylet" | tr -d ' ')
    if [[ "$sid" == "$(ps -o sid= -p $$ | tr -d ' ')" ]]; then
        echo "ray_cluster: the $name node did not get its own session; refusing to track it" >&2
        return 1
    fi
    echo "$sid" >"$DIR/$name.sid"
}

# kill_session SID : SIGTERM, then SIGKILL, every process whose session id is SID.
kill_session() {
    local sid=$1 sig pids
    [[ "$sid" =~ ^[0-9]+$ ]] || return 0
    [[ "$sid" == "$(ps -o sid= -p $$ | tr -d ' ')" ]] && return 0
    for sig in TERM KILL; do
        pids=$(ps -eo pid=,sid= | awk -v s="$sid" '$2 == s {print $1}')
        [[ -z "$pids" ]] && return 0
        for p in $pids; do kill "-$sig" "$p" 2>/dev/null || true; done
        sleep 1
    done
}

stop() {
    local f
    for f in "$DIR"/worker.sid "$DIR"/head.sid "$DIR"/*.sid; do
        [[ -f "$f" ]] || continue
        kill_session "$(cat "$f")"
        rm -f "$f"
    done
    rm -rf "$DIR"
    echo "ray_cluster: stopped ($DIR removed)"
}

case "${1:-}" in
start)
    if [[ -f "$DIR/head.sid" ]]; then
        echo "ray_cluster: a cluster is already recorded in $DIR; run '$0 stop' first" >&2
        exit 1
    fi
    mkdir -p "$DIR"
    trap 'echo "ray_cluster: start failed, cleaning up" >&2; stop >&2' ERR
    start_node head --head --port "$PORT" --include-dashboard=false \
        --ray-client-server-port $((PORT + 1)) --dashboard-port $((PORT + 2))
    start_node worker --address "$ADDRESS"
    # Both raylets must be registered before anyone connects.
    python - "$ADDRESS" <<'EOF'
import sys, time, ray
ray.init(address=sys.argv[1], logging_level="ERROR", log_to_driver=False)
deadline = time.time() + 60
while sum(n["Alive"] for n in ray.nodes()) < 2:
    if time.time() > deadline:
        sys.exit("ray_cluster: the worker node did not join within 60 s")
    time.sleep(0.5)
ray.shutdown()
EOF
    trap - ERR
    echo "$ADDRESS" >"$DIR/address"
    echo "export HYBRIDFACE_RAY_ADDRESS=$ADDRESS"
    ;;
stop)
    stop
    ;;
status)
    if [[ -f "$DIR/address" ]]; then
        RAY_ADDRESS=$(cat "$DIR/address") ray status 2>&1 | sed -n '1,20p'
    else
        echo "ray_cluster: no cluster recorded in $DIR"
        exit 1
    fi
    ;;
*)
    echo "usage: $0 start|stop|status" >&2
    exit 2
    ;;
esac
