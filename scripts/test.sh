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
if [ ${#need_apt[@]} -gt 0 ]; then
    echo "test.sh: installing ${need_apt[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${need_apt[@]}"
fi

# Unit tests, integration tests (real files, real child processes killed with
# SIGKILL), doc tests.
cargo test --all-targets --locked "$@"
cargo test --doc --locked
