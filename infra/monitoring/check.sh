#!/usr/bin/env bash
# Checks the monitoring kit with Prometheus's own tool (Debian package prometheus): the alert
# rules, their unit tests, and a real exposition of the control plane's and an agent's metrics.
set -euo pipefail
cd "$(dirname "$0")"
promtool check rules alerts.yml
promtool test rules alerts.test.yml
for side in control-plane agent; do
  echo "promtool check metrics: $side"
  node --import tsx ../../test/helpers/metrics-example.ts "$side" | promtool check metrics
done
