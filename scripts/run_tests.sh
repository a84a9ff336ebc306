#!/usr/bin/env bash
# The whole suite: lint (ruff), then the tests on the embedded default (SQLite, in-memory layer,
# in-process broker), then the database, ingest and DICOMweb tests again on
# PostgreSQL. Called by `make test`.
set -uo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
PY=.venv/bin/python
PG_TEST_URL=${PG_TEST_URL:-postgres://postgres@127.0.0.1:5432/contextrt_ci}
mkdir -p test-artifacts

status=0
echo "== Lint (ruff, rules in ruff.toml) =="
"$PY" -m ruff check .
rc=$?; [ $rc -ne 0 ] && status=$rc

echo "== ContextRT suite on the embedded default (SQLite) =="
env -u DATABASE_URL -u REDIS_URL -u BROKER_URL "$PY" -m pytest "$@"
rc=$?; [ $rc -ne 0 ] && [ $rc -ne 5 ] && status=$rc

echo "== Database, ingest and DICOMweb tests on PostgreSQL ($PG_TEST_URL) =="
if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  DATABASE_URL="$PG_TEST_URL" "$PY" -m pytest -m postgres --create-db "$@"
  rc=$?; [ $rc -ne 0 ] && [ $rc -ne 5 ] && status=$rc
elif [ "${CI:-}" = "true" ]; then
  echo "PostgreSQL is not reachable on 127.0.0.1:5432 under CI=true" >&2; status=1
else
  echo "SKIPPED: PostgreSQL not reachable on 127.0.0.1:5432 (outside CI)"
fi
exit $status
