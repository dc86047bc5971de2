#!/usr/bin/env bash
# azure-eventhub's own live tests (from the sdist of the version the project pins) against the
# local endpoint of this checkout, on every transport; the endpoint is stopped by its pid at the end.
# Usage: tests/sdk_live/run.sh [pytest args...]   default: livetest (the whole suite, about an hour)
# Env: WORK (default .venv/livetests), PER_TEST_TIMEOUT (default 400 s: a few tests sleep 250 s),
#      TLS_PORT, WSS_PORT, WS_PORT (default 5671, 443, 80: where the SDK goes for AMQP over TLS and
#      WebSocket; binding ports under 1024 needs root or CAP_NET_BIND_SERVICE), WORKERS (default
#      4: the tests mostly wait, so they run side by side, each worker on hubs of its own).
set -u
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="$ROOT/.venv"
WORK="${WORK:-$VENV/livetests}"
PY="$WORK/bin/python"

if [ ! -f "$WORK/.installed" ]; then
    # a virtualenv of its own: the SDK's test packages extend azure.eventhub, which must be
    # installed beside them (the project's pinned version)
    version="$("$VENV/bin/python" -c 'import azure.eventhub as m; print(m.__version__)')"
    "$VENV/bin/python" -m venv "$WORK" || exit 2
    "$PY" -m pip install -q "azure-eventhub==$version" pytest==9.2.0 pytest-timeout==2.4.0 \
        pytest-asyncio==1.5.0 python-dotenv==1.2.4 azure-mgmt-eventhub==12.0.0 \
        azure-identity==1.27.0 azure-eventhub-checkpointstoreblob==1.2.0 \
        azure-eventhub-checkpointstoreblob-aio==1.2.0 aiohttp==3.13.4 websocket-client==1.9.2 \
        pytest-xdist==3.8.0 || exit 2
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$WORK/sdist" "azure-eventhub==$version" || exit 2
    tar xzf "$WORK/sdist/azure_eventhub-$version.tar.gz" -C "$WORK/sdist" || exit 2
    rm -rf "$WORK/tests" && cp -r "$WORK/sdist/azure_eventhub-$version/tests" "$WORK/tests"
    touch "$WORK/.installed"
fi
cp "$HERE/livetest_conftest.py" "$WORK/tests/livetest/conftest.py"

DATA="$(mktemp -d)"
"$PY" - "$DATA/hubs.json" <<'PY'
import json, sys
hubs = [{"Name": f"eh-{i:04d}", "PartitionCount": "2", "ConsumerGroups": []} for i in range(1, 401)]
doc = {"UserConfig": {"NamespaceConfig": [{"Type": "EventHub", "Name": "local", "Entities": hubs}]}}
open(sys.argv[1], "w").write(json.dumps(doc))
PY
cd "$ROOT"
"$VENV/bin/python" -m jobs emulator --config "$DATA/hubs.json" --data-dir "$DATA" --port 0 \
    --fsync never --tls-port "${TLS_PORT:-5671}" --wss-port "${WSS_PORT:-443}" \
    --ws-port "${WS_PORT:-80}" > "$DATA/stdout" 2> "$DATA/emulator.log" &
EMU=$!
trap 'kill $EMU 2>/dev/null; wait $EMU 2>/dev/null' EXIT
for _ in $(seq 150); do [ "$(wc -l < "$DATA/stdout")" -ge 5 ] && break; sleep 0.2; done
[ "$(wc -l < "$DATA/stdout")" -ge 5 ] || { echo "the endpoint did not start:"; cat "$DATA/emulator.log"; exit 2; }
export LOCAL_EH_CONN="$(head -1 "$DATA/stdout")"
cert="$(sed -n 's/^Certificate=//p' "$DATA/stdout")"
cat "$("$PY" -c 'import certifi; print(certifi.where())')" "$cert" > "$DATA/ca-bundle.pem"
export LOCAL_EH_CA_BUNDLE="$DATA/ca-bundle.pem" SSL_CERT_FILE="$DATA/ca-bundle.pem"
sed 's/^/endpoint: /' "$DATA/stdout"

REPORT="$WORK/results-$(date -u +%Y%m%dT%H%M%SZ).xml"
cd "$WORK/tests"
# the suite's own settings only (not the project's pyproject.toml, which lies above WORK)
printf '[pytest]\nasyncio_mode = auto\nasyncio_default_fixture_loop_scope = function\n' > "$WORK/pytest.ini"
PYTHONPATH="$HERE" "$PY" -m pytest -c "$WORK/pytest.ini" --rootdir "$WORK/tests" -p no:cacheprovider \
    -n "${WORKERS:-4}" --timeout="${PER_TEST_TIMEOUT:-400}" -q -rfEs --junitxml="$REPORT" "${@:-livetest}"
rc=$?
[ -f "$REPORT" ] && "$PY" "$HERE/summary.py" "$REPORT"
echo "pytest exit $rc; report $REPORT; endpoint log $DATA/emulator.log"
exit $rc
