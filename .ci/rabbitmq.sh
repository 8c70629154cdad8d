#!/usr/bin/env bash
# Starts or stops a RabbitMQ node (Debian's rabbitmq-server package) with the
# management plugin, on ports of its own, for tests that need a real
# RabbitMQ (warrenctl migrate). Everything the node writes stays in $RMQ_DIR.
#
#   .ci/rabbitmq.sh start   # prints the URLs to export
#   .ci/rabbitmq.sh stop
#
# Settings: RMQ_NODENAME (default warren-test@localhost), RMQ_AMQP_PORT
# (5681), RMQ_HTTP_PORT (15681), RMQ_DIST_PORT (25681), RMQ_DIR
# (/tmp/<nodename>).
set -euo pipefail
node=${RMQ_NODENAME:-warren-test@localhost}
amqp=${RMQ_AMQP_PORT:-5681}
http=${RMQ_HTTP_PORT:-15681}
dist=${RMQ_DIST_PORT:-25681}
dir=${RMQ_DIR:-/tmp/${node%@*}}

case "${1:-}" in
start)
  if ! command -v rabbitmq-server >/dev/null; then
    echo "rabbitmq-server is not installed (apt-get install -y rabbitmq-server)" >&2
    exit 1
  fi
  # A node of this name left over from an earlier run goes first.
  rabbitmqctl -n "$node" stop >/dev/null 2>&1 || true
  rm -rf "$dir"
  mkdir -p "$dir/mnesia" "$dir/log"
  echo "[rabbitmq_management]." >"$dir/enabled_plugins"
  chmod -R a+rwX "$dir"
  export RABBITMQ_NODENAME=$node RABBITMQ_NODE_PORT=$amqp RABBITMQ_DIST_PORT=$dist \
    RABBITMQ_ENABLED_PLUGINS_FILE=$dir/enabled_plugins RABBITMQ_MNESIA_BASE=$dir/mnesia \
    RABBITMQ_LOG_BASE=$dir/log RABBITMQ_PID_FILE=$dir/pid \
    RABBITMQ_SERVER_START_ARGS="-rabbitmq_management tcp_config [{port,$http},{ip,\"127.0.0.1\"}]"
  rabbitmq-server -detached
  # -detached returns before the node registers; wait on its pid file.
  rabbitmqctl -n "$node" wait "$dir/pid" --timeout 120 >/dev/null
  rabbitmqctl -n "$node" await_startup --timeout 120 >/dev/null
  for _ in $(seq 1 100); do
    if curl -sf -u guest:guest "http://127.0.0.1:$http/api/overview" >/dev/null; then break; fi
    sleep 0.3
  done
  echo "WARREN_TEST_RABBITMQ_URL=amqp://guest:guest@127.0.0.1:$amqp/"
  echo "WARREN_TEST_RABBITMQ_API=http://127.0.0.1:$http"
  ;;
stop)
  rabbitmqctl -n "$node" stop >/dev/null 2>&1 || true
  ;;
*)
  echo "usage: $0 start|stop" >&2
  exit 64
  ;;
esac
