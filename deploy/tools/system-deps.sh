#!/usr/bin/env bash
# The system programs brand-listener's commands need, in one place (used by .ci/run, `make test`
# and `make demo`). Installs what is missing with apt-get when run as root; otherwise names the
# missing packages and the one command that installs them, and exits 1.
#
#   bash deploy/tools/system-deps.sh [demo|test]   (default: test)
set -euo pipefail

purpose="${1:-test}"
need_apt=()
# The local Kafka broker runs from the official jars: Java 17+, resolved with Maven.
command -v java >/dev/null 2>&1 || need_apt+=(openjdk-17-jre-headless)
command -v mvn >/dev/null 2>&1 || need_apt+=(maven)
command -v python3 >/dev/null 2>&1 || need_apt+=(python3 python3-venv)
if [ "$purpose" = "test" ]; then
  # Prometheus and promtool: rule unit tests and the dashboard-query test run a real one.
  command -v promtool >/dev/null 2>&1 || need_apt+=(prometheus)
  command -v amtool >/dev/null 2>&1 || need_apt+=(prometheus-alertmanager)
  # Request Tracker 5: tests/integration/test_request_tracker_real.py runs the RT sink on a real one.
  [ -x /usr/share/request-tracker5/libexec/rt-server ] || need_apt+=(request-tracker5 rt5-db-sqlite)
  # No Docker engine here: the compose file is validated with `docker-compose config` only.
  command -v docker-compose >/dev/null 2>&1 || need_apt+=(docker-compose)
  # The inbox's browser tests drive Debian's Chromium.
  command -v chromium >/dev/null 2>&1 || need_apt+=(chromium)
  # helm is built from source with Go (no binary downloads): golang-go if there is no Go.
  if ! command -v helm >/dev/null 2>&1 && [ ! -x "$HOME/go/bin/helm" ] && ! command -v go >/dev/null 2>&1; then
    need_apt+=(golang-go)
  fi
fi

if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing system packages for '$purpose': ${need_apt[*]}" >&2
    echo "install them with:  sudo bash deploy/tools/system-deps.sh $purpose" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${need_apt[@]}"
fi

if [ "$purpose" = "test" ] && ! command -v helm >/dev/null 2>&1 && [ ! -x "$HOME/go/bin/helm" ]; then
  echo "building helm with the Go toolchain (no binary downloads here)"
  go install helm.sh/helm/v3/cmd/helm@v3.18.6
fi
