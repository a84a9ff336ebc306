#!/usr/bin/env bash
# Make sure PostgreSQL, Redis and RabbitMQ run on loopback. Under CI=true a
# missing service is installed from Debian packages and started; outside CI we
# only report, and the tests that need it skip with a reason.
set -u
ci=${CI:-}
need_apt=()
pg_up() { pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; }
redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
rabbit_up() { (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; }

start_pg() {
  command -v pg_ctlcluster >/dev/null || return 1
  local ver; ver=$(ls /etc/postgresql 2>/dev/null | head -1)
  if [ -z "$ver" ]; then return 1; fi
  pg_ctlcluster --skip-systemctl-redirect "$ver" main start 2>/dev/null || true
}
start_redis() {
  command -v redis-server >/dev/null || return 1
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 --port 6379 --save "" --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log
}
start_rabbit() { command -v rabbitmq-server >/dev/null || return 1; rabbitmq-server -detached; }

wait_for() { for _ in $(seq 1 60); do "$1" && return 0; sleep 1; done; return 1; }

if [ "$ci" = "true" ] && [ "$(id -u)" = "0" ]; then
  pg_up || command -v pg_ctlcluster >/dev/null || need_apt+=(postgresql)
  redis_up || command -v redis-server >/dev/null || need_apt+=(redis-server)
  rabbit_up || command -v rabbitmq-server >/dev/null || need_apt+=(rabbitmq-server)
  if [ ${#need_apt[@]} -gt 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >/dev/null
  fi
  pg_up || { start_pg; wait_for pg_up; }
  redis_up || { start_redis; wait_for redis_up; }
  rabbit_up || { start_rabbit; wait_for rabbit_up; }
fi
for svc in pg redis rabbit; do
  if "${svc}_up"; then echo "service $svc: up"; else echo "service $svc: NOT reachable"; fi
done
if pg_up; then
  psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='contextrt'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -c "CREATE DATABASE contextrt" >/dev/null
fi
exit 0
