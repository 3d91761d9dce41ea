#!/usr/bin/env bash
# Checks deploy/prometheus/alerts.yml and deploy/grafana/ordo.json with promtool (Debian's
# Prometheus package; `make prom-tools` unpacks it into $ORDO_CACHE/promtool, no root needed):
# the rules parse and their unit tests (alerts.test.yml) pass, and every query of the dashboard
# is valid PromQL. That they use only metric names and labels the engine exports is
# engine/tests/dashboards.rs.
#
#   deploy/check_observability.sh        (make test runs it)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
promtool=${ORDO_PROMTOOL:-${ORDO_CACHE:-$HOME/.cache/ordo}/promtool/promtool}
if [ ! -x "$promtool" ]; then
  echo "deploy/check_observability.sh: no promtool at $promtool; run make prom-tools, or set ORDO_PROMTOOL" >&2
  exit 2
fi

"$promtool" check rules "$here/prometheus/alerts.yml"
(cd "$here/prometheus" && "$promtool" test rules alerts.test.yml)

# Each dashboard query as a recording rule (JSON is YAML), Grafana's variables given values.
rules=$(mktemp "${TMPDIR:-/tmp}/ordo-dashboard-rules.XXXXXX")
trap 'rm -f "$rules"' EXIT
python3 - "$here/grafana/ordo.json" >"$rules" <<'PY'
import json, sys
dashboard = json.load(open(sys.argv[1], encoding="utf-8"))
values = {"$__rate_interval": "5m", "$pipeline": ".*", "$job": "ordo"}
rules = []
for panel in dashboard["panels"]:
    for target in panel.get("targets", []):
        expr = target["expr"]
        for name, value in values.items():
            expr = expr.replace(name, value)
        if "$" in expr:
            sys.exit(f"panel {panel['title']!r}: an unknown variable in {expr!r}")
        rules.append({"record": f"ordo_dashboard:panel{panel['id']}_{target['refId']}", "expr": expr})
if not rules:
    sys.exit("the dashboard has no queries")
print(json.dumps({"groups": [{"name": "ordo-dashboard", "rules": rules}]}, indent=1))
PY
echo "deploy/grafana/ordo.json: $(grep -c '"record"' "$rules") queries"
"$promtool" check rules "$rules" | sed "s|$rules|deploy/grafana/ordo.json (its queries as rules)|"
