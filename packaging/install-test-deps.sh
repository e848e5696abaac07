#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: redis-server for the cluster
# tests. Only as root on a Debian system; otherwise it says why and the tests that need it skip.
set -uo pipefail
if command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; then
    exit 0
fi
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing and cannot be installed here (needs root and apt-get):" \
        "the cluster tests will skip" >&2
    exit 0
fi
export DEBIAN_FRONTEND=noninteractive
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends redis-server; } >/dev/null; then
    echo "installing redis-server failed: the cluster tests will skip" >&2
fi
exit 0
