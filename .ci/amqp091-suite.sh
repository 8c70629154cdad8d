#!/usr/bin/env bash
# Runs the official Go client's own integration suite (amqp091-go v1.16.0)
# against a Warren broker started here, every test included. The suite's
# connection-recovery tests close connections through the management HTTP
# API, which they expect on localhost:15672: Warren serves it there during
# the run. AMQP091_SUITE_HTTP_PORT moves it (and the suite's copy) to another
# port on a machine where 15672 is taken.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
tmp=$(mktemp -d)
cleanup() {
  if [ -n "${pid:-}" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  chmod -R u+w "$tmp" 2>/dev/null || true
  rm -rf "$tmp"
}
trap cleanup EXIT

http_port=${AMQP091_SUITE_HTTP_PORT:-15672}
if (echo >"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then
  echo "port $http_port is taken: the suite needs Warren's HTTP API there (set AMQP091_SUITE_HTTP_PORT to use another)"
  exit 1
fi

go build -o "$tmp/warren" ./cmd/warren
go build -o "$tmp/warrenctl" ./cmd/warrenctl
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$tmp/warren" --data-dir "$tmp/data" --amqp-listen "127.0.0.1:$port" --http-listen "127.0.0.1:$http_port" --log-level warn --log-format json 2>"$tmp/warren.log" &
pid=$!
for _ in $(seq 1 100); do
  if (echo >"/dev/tcp/127.0.0.1/$port") 2>/dev/null && (echo >"/dev/tcp/127.0.0.1/$http_port") 2>/dev/null; then break; fi
  sleep 0.1
done

src=$(go mod download -json github.com/rabbitmq/amqp091-go@v1.16.0 | python3 -c 'import json,sys; print(json.load(sys.stdin)["Dir"])')
cp -r "$src" "$tmp/amqp091"
chmod -R u+w "$tmp/amqp091"
cd "$tmp/amqp091"
# The suite runs its RabbitMQ-specific tests only when the server's product
# property says "RabbitMQ"; opt Warren in so they run rather than pass
# vacuously (see docs/compatibility.md).
sed -i 's/server == "RabbitMQ"/(server == "RabbitMQ" || server == "Warren")/; s/product.(string) == "RabbitMQ"/(product.(string) == "RabbitMQ" || product.(string) == "Warren")/' integration_test.go
grep -q '"Warren"' integration_test.go || { echo "could not opt Warren into the RabbitMQ-specific tests"; exit 1; }
if [ "$http_port" != 15672 ]; then
  sed -i "s/15672/$http_port/g" internal/utils/http.go recovery_test.go
fi
status=0
# The memory-alarm test drives the broker through rabbitmqctl: warrenctl
# takes its commands, talking to this Warren's API.
AMQP_URL="amqp://guest:guest@127.0.0.1:$port/" RABBITMQ_RABBITMQCTL_PATH="$tmp/warrenctl" \
  WARREN_URL="http://127.0.0.1:$http_port" WARREN_USERNAME=guest WARREN_PASSWORD=guest GOFLAGS=-mod=mod go test -tags integration -count=1 -timeout 15m -v . >"$tmp/suite.out" 2>&1 || status=$?
grep -E "^(--- FAIL|--- SKIP|FAIL|ok|PASS)" "$tmp/suite.out" || true
echo "amqp091-go suite: $(grep -c "^--- PASS" "$tmp/suite.out") passed, $(grep -c "^--- FAIL" "$tmp/suite.out") failed, $(grep -c "^--- SKIP" "$tmp/suite.out") skipped"
if [ $status -ne 0 ]; then tail -60 "$tmp/suite.out"; fi
if [ $status -ne 0 ]; then
  echo "--- broker log (last 50 lines)"
  tail -50 "$tmp/warren.log"
fi
exit $status
