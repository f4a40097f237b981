#!/usr/bin/env bash
# Black box: `tierlog serve` with a SASL_SSL listener set up as the README's
# Security section says (a throwaway CA made with openssl, one PEM keystore,
# users created over the loopback PLAINTEXT listener), then Debian's kcat
# and confluent-kafka (PyPI; its own librdkafka) produce and consume over
# SASL_SSL with SCRAM-SHA-512, SCRAM-SHA-256 and PLAIN, and a wrong
# password is refused. Called by scripts/test.sh.
#
# Usage: sasl_ssl_check.sh TIERLOG_BIN PYTHON   (exits non-zero on a failure)
set -euo pipefail
bin=$1
python=$2
work=$(mktemp -d)
serve_pid=""
cleanup() {
    [ -z "$serve_pid" ] || kill "$serve_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT
fail() {
    echo "sasl_ssl_check.sh: FAIL: $*" >&2
    echo "--- broker log:" >&2
    grep -v "applied catalog migration" "$work/serve.log" | tail -20 >&2 || true
    exit 1
}
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# The README's PKI.
pki="$work/pki"
mkdir -p "$pki"
(
    cd "$pki"
    openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=tierlog test CA" \
        -keyout ca.key -out ca.pem 2>/dev/null
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" \
        -keyout broker.key -out broker.csr 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1\n' > san.ext
    openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial \
        -days 2 -extfile san.ext -out broker.crt 2>/dev/null
    cat broker.key broker.crt > broker.pem
)

sport=$(free_port)
pport=$(free_port)
cat > "$work/tierlog.toml" <<TOML
listeners = ["SASL_SSL://127.0.0.1:$sport", "PLAINTEXT://127.0.0.1:$pport"]
ssl.keystore.type = "PEM"
ssl.keystore.location = "$pki/broker.pem"
sasl.enabled.mechanisms = ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"]
TOML
"$bin" serve --config "$work/tierlog.toml" --data-dir "$work/data" --metrics-listen off \
    > "$work/serve.log" 2>&1 &
serve_pid=$!
for _ in $(seq 1 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$sport") 2>/dev/null && break
    sleep 0.1
done

# Users over the loopback PLAINTEXT listener; passwords on stdin.
alice_pw="alice-$RANDOM-$RANDOM"
bob_pw="bob-$RANDOM-$RANDOM"
printf '%s\n' "$alice_pw" | "$bin" user add alice --mechanism SCRAM-SHA-512 --password-stdin \
    --bootstrap "127.0.0.1:$pport" >/dev/null || fail "user add alice"
printf '%s\n' "$bob_pw" | "$bin" user add bob --mechanism SCRAM-SHA-256 --password-stdin \
    --bootstrap "127.0.0.1:$pport" >/dev/null || fail "user add bob"
users=$("$bin" user list --bootstrap "127.0.0.1:$pport") || fail "user list"
grep -q "alice" <<<"$users" || fail "user list lacks alice: $users"

# kcat: produce with SCRAM-SHA-512, read back with PLAIN (checked against
# the same stored SCRAM keys).
kcat_sasl=(-b "127.0.0.1:$sport" -X security.protocol=SASL_SSL -X "ssl.ca.location=$pki/ca.pem")
seq 1 20 | sed 's/^/kcat-/' | timeout 60 kcat "${kcat_sasl[@]}" \
    -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=alice -X "sasl.password=$alice_pw" \
    -t secure -P || fail "kcat produce over SASL_SSL (SCRAM-SHA-512)"
got=$(timeout 60 kcat "${kcat_sasl[@]}" \
    -X sasl.mechanisms=PLAIN -X sasl.username=alice -X "sasl.password=$alice_pw" \
    -t secure -C -o beginning -e -q) || fail "kcat consume over SASL_SSL (PLAIN)"
[ "$got" = "$(seq 1 20 | sed 's/^/kcat-/')" ] || fail "kcat read back: $got"
# A wrong password is refused (SASL_AUTHENTICATION_FAILED), and the
# broker keeps serving.
if timeout 30 kcat "${kcat_sasl[@]}" -X sasl.mechanisms=SCRAM-SHA-512 -X sasl.username=alice \
    -X sasl.password=wrong -L -m 10 > "$work/wrong.out" 2>&1; then
    fail "kcat listed metadata with a wrong password"
fi
grep -qi "authentication" "$work/wrong.out" || fail "no authentication error for a wrong password: $(head -5 "$work/wrong.out")"
echo "sasl_ssl_check.sh: kcat $(kcat -V 2>/dev/null | sed -n 's/^Version \([^ ]*\).*librdkafka \([^ ]*\).*/\1 (librdkafka \2)/p' | head -1) over SASL_SSL: SCRAM-SHA-512, PLAIN, wrong password refused"

# confluent-kafka: SCRAM-SHA-256 producer and group consumer.
timeout 300 "$python" "$(dirname "$0")/../tests/python/sasl_ssl_client.py" \
    "127.0.0.1:$sport" "$pki/ca.pem" bob "$bob_pw" || fail "confluent-kafka over SASL_SSL"

kill -TERM "$serve_pid"
wait "$serve_pid" || fail "tierlog serve exited with an error on SIGTERM"
serve_pid=""
