#!/bin/sh
# Checks the Prometheus files of deploy/prometheus/ with promtool (Prometheus 2.x):
#   deploy/prometheus/check.sh
set -eu
cd "$(dirname "$0")"

promtool check rules alerts.yml
promtool test rules alerts_test.yml
promtool check config prometheus.yml # also checks alerts.yml, its rule file

# scrape.yml uses Kubernetes pod discovery, which Debian's promtool is built without.
if out=$(promtool check config scrape.yml 2>&1); then
    printf '%s\n' "$out"
elif printf '%s' "$out" | grep -q 'field kubernetes_sd_configs not found'; then
    echo "promtool has no Kubernetes discovery (Debian's build): checking scrape.yml with" \
        "static_configs in place of its kubernetes_sd_configs"
    command -v python3 >/dev/null && python3 -c 'import yaml' 2>/dev/null || {
        echo "FAILED: that needs python3 with PyYAML" >&2
        exit 1
    }
    tmp=$(mktemp -d)
    trap 'rm -rf "$tmp"' EXIT
    python3 - "$tmp/scrape-static.yml" <<'EOF'
import sys, yaml
cfg = yaml.safe_load(open("scrape.yml"))
n = 0
for job in cfg["scrape_configs"]:
    sd = job.pop("kubernetes_sd_configs", None)
    if sd is not None:
        # What Kubernetes discovery may take: role and namespaces (checked here by hand).
        for c in sd:
            assert set(c) <= {"role", "namespaces", "selectors", "api_server", "attach_metadata"}, c
            assert c["role"] in {"pod", "endpoints", "endpointslice", "service", "node", "ingress"}, c
        job["static_configs"] = [{"targets": ["placeholder:9464"]}]
        n += 1
yaml.safe_dump(cfg, open(sys.argv[1], "w"), sort_keys=False)
print(f"  {n} jobs with kubernetes_sd_configs given a placeholder static target")
EOF
    promtool check config "$tmp/scrape-static.yml"
else
    printf '%s\n' "$out" >&2
    exit 1
fi
