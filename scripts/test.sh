#!/usr/bin/env bash
# The one test command: installs what the tests need and is missing, then runs
# every test. Works on a fresh Debian machine with the Rust toolchain and a C
# compiler. Later suites (librdkafka, moto) add their installs here.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v cc >/dev/null 2>&1 || need_apt+=(build-essential)
command -v c++ >/dev/null 2>&1 || need_apt+=(g++)
# librdkafka (rdkafka's cmake-build, a dev-dependency for the Kafka client
# tests) needs cmake, and curl headers whenever CMake finds libcurl.
command -v cmake >/dev/null 2>&1 || need_apt+=(cmake)
[ -f /usr/include/x86_64-linux-gnu/curl/curl.h ] || [ -f /usr/include/curl/curl.h ] || need_apt+=(libcurl4-openssl-dev)
# rdkafka's `ssl` feature (tests/security.rs: SSL and SASL_SSL, SCRAM) links
# the system OpenSSL, found through pkg-config.
[ -f /usr/include/openssl/ssl.h ] || need_apt+=(libssl-dev)
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
# The SASL_SSL black box (scripts/sasl_ssl_check.sh): Debian's kcat and
# the openssl CLI for its throwaway CA.
command -v kcat >/dev/null 2>&1 || need_apt+=(kcat)
command -v openssl >/dev/null 2>&1 || need_apt+=(openssl)
# moto (an independent S3 implementation) runs in a venv and is probed with curl.
command -v curl >/dev/null 2>&1 || need_apt+=(curl)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3)
python3 -c 'import venv, ensurepip' >/dev/null 2>&1 || need_apt+=(python3-venv)
# Headless Chromium loads the status page (scripts/status_page_check.sh).
# Heavy on a fresh machine: about 155 MB to download, 460 MiB installed,
# 70 s to install here. TIERLOG_TEST_CHROMIUM=0 skips the install and the
# check (say so when reporting a run); the default is to run it.
chromium_check=${TIERLOG_TEST_CHROMIUM:-1}
if [ "$chromium_check" != 0 ]; then
    command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
fi
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "test.sh: installing ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# moto, for the tiering suite's second run; kafka-python, for the black-box
# consumer group script; confluent-kafka (wheels bundle their librdkafka),
# for the SASL_SSL black box.
if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c 'import kafka, confluent_kafka' >/dev/null 2>&1; then
    [ -x .venv/bin/python ] || python3 -m venv .venv
    .venv/bin/pip install -q 'moto[server]' 'kafka-python>=2.2,<3' 'confluent-kafka>=2.3,<3'
fi
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
mkdir -p target
.venv/bin/moto_server -H 127.0.0.1 -p "$port" > target/moto.log 2>&1 &
moto_pid=$!
serve_pid=""
trap 'kill "$moto_pid" 2>/dev/null || true; [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true' EXIT
for _ in $(seq 1 100); do
    curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null 2>&1 && break
    sleep 0.2
done
curl -fsS "http://127.0.0.1:$port/moto-api/" >/dev/null || { echo "moto did not start"; cat target/moto.log; exit 1; }

# Module layering (docs/design.md §1): no import runs up a layer.
python3 scripts/check_layers.py

# Unit tests, integration tests (real files, an in-process S3 server, real
# librdkafka clients, real child processes killed with SIGKILL), doc tests.
cargo test --all-targets --locked "$@"
cargo test --doc --locked
# The tiering, remote-read and tier-check suites again, against moto (it
# lists multipart uploads; s3s-fs does not).
TIERLOG_TEST_S3_ENDPOINT="http://127.0.0.1:$port" cargo test --locked --test tiering --test remote_reads --test tier_check "$@"

# Black box: the built broker with kafka-python's group consumer. The binary
# is the one `cargo test` built for the CLI tests: a separate `cargo build`
# would resolve features without the dev-dependencies and compile every
# dependency a second time (gigabytes of disk on a fresh machine). An empty
# settings file keeps a developer's ./tierlog.toml out of the run.
bin="${CARGO_TARGET_DIR:-target}/debug/tierlog"
[ -x "$bin" ] || { echo "test.sh: $bin was not built by cargo test"; exit 1; }
kport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
kdata=$(mktemp -d)
: > "$kdata/empty.toml"
mport=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$bin" serve --config "$kdata/empty.toml" --data-dir "$kdata/data" --listen "127.0.0.1:$kport" \
    --metrics-listen "127.0.0.1:$mport" > target/serve.log 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$kport") 2>/dev/null && break
    sleep 0.1
done
if ! timeout 300 .venv/bin/python tests/python/group_consumer.py "127.0.0.1:$kport" | tee target/group_consumer.out; then
    echo "kafka-python group consumer script failed; broker log:"; tail -50 target/serve.log
    exit 1
fi
# Transactions with confluent-kafka: commit, abort, read_committed,
# read_uncommitted, a zombie fenced.
if ! timeout 300 .venv/bin/python tests/python/txn_client.py "127.0.0.1:$kport"; then
    echo "confluent-kafka transactions script failed; broker log:"; tail -50 target/serve.log
    exit 1
fi
# Probes of the metrics endpoint: up and ready.
[ "$(curl -fsS "http://127.0.0.1:$mport/healthz")" = ok ] || { echo "GET /healthz is not ok"; exit 1; }
[ "$(curl -fsS "http://127.0.0.1:$mport/readyz")" = ready ] || { echo "GET /readyz is not ready"; exit 1; }
# The status page in headless Chromium: the script's topic and group.
if [ "$chromium_check" != 0 ]; then
    py_group=$(sed -n 's/.* group \([^ ]*\) topic \([^ )]*\)).*/\1/p' target/group_consumer.out)
    py_topic=$(sed -n 's/.* group \([^ ]*\) topic \([^ )]*\)).*/\2/p' target/group_consumer.out)
    scripts/status_page_check.sh "$bin" "127.0.0.1:$kport" "127.0.0.1:$mport" "$py_topic" "$py_group"
else
    echo "test.sh: TIERLOG_TEST_CHROMIUM=0: the status page was not loaded in Chromium"
fi
# The Prometheus endpoint counted the group's requests.
metrics=$(curl -fsS "http://127.0.0.1:$mport/metrics")
for family in 'tierlog_requests_total{api="JoinGroup"}' 'tierlog_requests_total{api="OffsetCommit"}' 'tierlog_log_end_offset{topic='; do
    grep -qF "$family" <<<"$metrics" || { echo "GET /metrics lacks $family:"; echo "$metrics" | head -40; exit 1; }
done
# The tier status document, as `tierlog tier status --json` reads it.
"$bin" tier status --json --metrics "127.0.0.1:$mport" \
    | python3 -c 'import json, sys; d = json.load(sys.stdin); assert d["format_version"] == 1 and d["partitions"], d' \
    || { echo "GET /v1/tier/status is not the expected document"; exit 1; }
# A clean shutdown on SIGTERM is part of the check.
kill -TERM "$serve_pid"
serve_rc=0
wait "$serve_pid" || serve_rc=$?
serve_pid=""
if [ "$serve_rc" -ne 0 ]; then
    echo "tierlog serve exited with status $serve_rc on SIGTERM; broker log:"; tail -50 target/serve.log
    exit 1
fi
rm -rf "$kdata"

# Black box over SASL_SSL, set up as the README's Security section says:
# kcat (SCRAM-SHA-512, PLAIN, a wrong password) and confluent-kafka
# (SCRAM-SHA-256, a consumer group).
timeout 600 scripts/sasl_ssl_check.sh "$bin" .venv/bin/python

# The crash matrix (tests/crash_matrix.rs): the binary with failpoints
# compiled in (feature `failpoints`; only our crate is rebuilt, no
# dependency), killed at every failpoint and at random. Last, because it
# replaces target/debug/tierlog with the failpoint build.
# TIERLOG_CRASH_LONG=1 scripts/test.sh runs 120 kill cycles instead.
# Its S3 run (multipart uploads of 5.5 MiB segments, a failpoint before an
# upload completes, no upload left open) uses moto; the two runs one after
# the other, as the 2-core machines this runs on are busy enough with one.
TIERLOG_TEST_S3_ENDPOINT="http://127.0.0.1:$port" \
    cargo test --locked --features failpoints --test crash_matrix -- --nocapture --test-threads=1

# A broker SIGKILLed between EndTxn's PrepareCommit row and its markers
# (failpoint txn.end.after_prepare): the restart completes the commit.
cargo test --locked --features failpoints --test transactions_crash
