#!/usr/bin/env bash
# Refresh the CRD schemas the Helm tests validate the chart's custom resources against:
# the openAPIV3Schema of each CRD, from the upstream Go modules (Apache-2.0) fetched
# through the Go module proxy (`go mod download`; no other download), as compact JSON.
#
#   bash tests/deploy/crds/fetch.sh        (needs go and the repository's .venv)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
py="${PYTHON:-$here/../../../.venv/bin/python}"
PROMETHEUS_OPERATOR=v0.75.2
KEDA=v2.15.1

dir() { go mod download -json "$1" | "$py" -c 'import json,sys; print(json.load(sys.stdin)["Dir"])'; }
po="$(dir "github.com/prometheus-operator/prometheus-operator@$PROMETHEUS_OPERATOR")/example/prometheus-operator-crd"
keda="$(dir "github.com/kedacore/keda/v2@$KEDA")/config/crd/bases"

"$py" - "$here" "$po/monitoring.coreos.com_prometheusrules.yaml" \
  "$po/monitoring.coreos.com_servicemonitors.yaml" "$keda/keda.sh_scaledobjects.yaml" \
  "$keda/keda.sh_triggerauthentications.yaml" <<'PY'
import json, sys
from pathlib import Path
import yaml

out = Path(sys.argv[1])
for source in sys.argv[2:]:
    crd = yaml.safe_load(Path(source).read_text())
    spec = crd["spec"]
    for version in spec["versions"]:
        if not version.get("served"):
            continue
        name = f"{spec['group']}_{version['name']}_{spec['names']['kind']}.json"
        schema = version["schema"]["openAPIV3Schema"]
        (out / name).write_text(json.dumps(schema, sort_keys=True, separators=(",", ":")) + "\n")
        print(name)
PY
