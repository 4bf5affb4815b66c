#!/usr/bin/env bash
# OpenAPI conformance check against a fresh example gateway.
#
#   scripts/conformance/run.sh [TONGBAN_BINARY] [checker options...]
#
# Starts `TONGBAN_BINARY serve --example-city nanjing` (default
# target/debug/tongban, e.g. as built by `cargo test`) in a fresh temporary
# directory on a free local port, waits for /readyz (60 s), installs the
# missing Python packages of requirements.txt, runs check_openapi.py against
# the document the gateway serves, and always stops the gateway.
# Extra arguments go to the checker (e.g. `--doc gateway/src/openapi.json`, `-v`).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
bin="$root/target/debug/tongban"
if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
    bin="$1"
    shift
fi
if [ ! -x "$bin" ]; then
    echo "conformance: no tongban binary at $bin (build it first, e.g. cargo test)" >&2
    exit 2
fi

python3 - <<'PY' 2>/dev/null || python3 -m pip install --quiet -r "$here/requirements.txt"
import sys
import cryptography, jsonschema, referencing  # noqa: F401
if sys.version_info < (3, 11):
    import tomli  # noqa: F401
PY

work="$(mktemp -d "${TMPDIR:-/tmp}/tongban-conformance.XXXXXX")"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')"
pid=""
status=1

cleanup() {
    if [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null; then
        kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    fi
    if [ "$status" -ne 0 ] && [ -f "$work/gateway.log" ]; then
        echo "--- last lines of the gateway log ($work/gateway.log) ---" >&2
        tail -n 40 "$work/gateway.log" >&2 || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

"$bin" serve --example-city nanjing --dir "$work" --listen "127.0.0.1:$port" >"$work/gateway.log" 2>&1 &
pid=$!

base="http://127.0.0.1:$port"
if ! python3 - "$base" "$pid" <<'PY'
import os, sys, time, urllib.request
base, pid = sys.argv[1], int(sys.argv[2])
deadline = time.time() + 60
while time.time() < deadline:
    try:
        os.kill(pid, 0)
    except OSError:
        sys.exit("conformance: the gateway exited before it was ready")
    try:
        with urllib.request.urlopen(base + "/readyz", timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
    except Exception:
        pass
    time.sleep(0.25)
sys.exit("conformance: /readyz not 200 within 60 s")
PY
then
    exit 1
fi
echo "conformance: gateway ready at $base (dir $work)"

set +e
python3 "$here/check_openapi.py" --base "$base" --keys "$work/nanjing/keys" "$@"
status=$?
set -e
exit "$status"
