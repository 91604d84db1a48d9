#!/usr/bin/env bash
# progressive-canary.sh: the hand-rolled canary that sluice-control replaces (see sluice.yaml
# next to this file). It raises the canary's weight in the Istio VirtualService step by step,
# waits, asks Prometheus for the canary's error rate and p95, and rolls back on a violation.
set -euo pipefail

NAMESPACE=bookinfo
VIRTUAL_SERVICE=reviews
PROMETHEUS=http://prometheus.monitoring:9090
STEPS="5 10 25 50 75 100"
INTERVAL=60              # seconds between steps
MAX_ERROR_RATE=0.01      # fraction of canary requests answered 5xx
MAX_P95=0.5              # seconds

# Route 1 of the VirtualService splits v1/v2; move the canary to $1 percent.
set_weight() {
  kubectl -n "$NAMESPACE" patch virtualservice "$VIRTUAL_SERVICE" --type=json -p "[
    {\"op\": \"replace\", \"path\": \"/spec/http/1/route/0/weight\", \"value\": $((100 - $1))},
    {\"op\": \"replace\", \"path\": \"/spec/http/1/route/1/weight\", \"value\": $1}
  ]"
}

# The first value of a PromQL query ("NaN" without data).
query() {
  curl -fsG "$PROMETHEUS/api/v1/query" --data-urlencode "query=$1" \
    | jq -r '.data.result[0].value[1] // "NaN"'
}

for step in $STEPS; do
  set_weight "$step"
  sleep "$INTERVAL"
  errors=$(query 'sum(rate(istio_requests_total{destination_version="v2",response_code=~"5.."}[1m]))
                  / sum(rate(istio_requests_total{destination_version="v2"}[1m]))')
  p95=$(query 'histogram_quantile(0.95, sum(rate(
                 istio_request_duration_milliseconds_bucket{destination_version="v2"}[1m])) by (le)) / 1000')
  if awk -v e="$errors" -v p="$p95" -v me="$MAX_ERROR_RATE" -v mp="$MAX_P95" \
       'BEGIN { exit !(e > me || p > mp) }'; then
    echo "SLO violated at ${step}%: error rate $errors, p95 ${p95}s; rolling back"
    set_weight 0
    exit 1
  fi
  echo "step ${step}%: error rate $errors, p95 ${p95}s"
done
echo "v2 takes all traffic"
