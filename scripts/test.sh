#!/usr/bin/env bash
# Install everything (Debian tools the integration tests drive, then .venv) and run the whole test suite:
# unit, real-data and integration tests. Extra arguments go to pytest, e.g. scripts/test.sh -k thresholds
set -euo pipefail
# Real tools the integration tests drive: kcat (a non-Python Kafka client), Prometheus + promtool,
# amtool (Alertmanager's configuration check), systemd-analyze (the unit's security exposure),
# docker-compose (to validate deploy/docker-compose.yml; no Docker engine is needed for that), openssl
# (test certificates for the TLS tests).
missing=()
command -v openssl >/dev/null || missing+=(openssl)
command -v kcat >/dev/null || missing+=(kcat)
command -v prometheus >/dev/null || missing+=(prometheus)
command -v promtool >/dev/null || missing+=(prometheus)
command -v systemd-analyze >/dev/null || missing+=(systemd)
command -v amtool >/dev/null || missing+=(prometheus-alertmanager)
command -v docker-compose >/dev/null || docker compose version >/dev/null 2>&1 || missing+=(docker-compose)
if [ ${#missing[@]} -gt 0 ]; then
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo -n"
    if command -v apt-get >/dev/null && $SUDO true 2>/dev/null; then
        echo "installing ${missing[*]} (apt-get)" >&2
        $SUDO apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
    else
        echo "note: ${missing[*]} not installed and no apt-get/root here: the tests that drive them will skip" >&2
    fi
fi
. "$(dirname "$0")/_venv.sh" dev,broker,eval
exec python -m pytest "$@"
