#!/usr/bin/env bash
# The Kubernetes half of a sluice canary release, shared by every pipeline in examples/ci/
# (the other half is `sluice-control start` and `sluice-control wait`, called by the pipelines
# themselves). The layout is examples/kubernetes/: Deployments APP-stable and APP-canary behind
# the Services the sidecars' upstreams name, and the ConfigMap APP-sluice with sluice.yaml and
# weights.yaml.
#
#   canary-release.sh deploy  IMAGE VERSION   # canary pods on IMAGE; the canary upstream's
#                                             # `version` in sluice.yaml becomes VERSION
#   canary-release.sh promote IMAGE VERSION   # the canary succeeded: stable pods on IMAGE and
#                                             # the stable upstream's `version` becomes VERSION;
#                                             # seeing it, sluice-control gives stable its
#                                             # traffic back (canary 0 %)
#
# Environment: NAMESPACE (default shop), APP (orders), CONTAINER (the app's container name,
# default APP), CONFIGMAP (APP-sluice). Needs kubectl, yq (v4) and sluice-proxy (to check the
# edited sluice.yaml before it is applied); examples/ci/tools.Dockerfile builds an image with
# all three.
set -euo pipefail

usage() {
    echo "usage: $0 deploy|promote IMAGE VERSION" >&2
    exit 2
}

[[ $# -eq 3 ]] || usage
action=$1
image=$2
version=$3
namespace=${NAMESPACE:-shop}
app=${APP:-orders}
container=${CONTAINER:-$app}
configmap=${CONFIGMAP:-$app-sluice}

# Rolls Deployment $1 to the image and waits until every pod runs it.
roll() {
    kubectl -n "$namespace" set image "deployment/$1" "$container=$image"
    kubectl -n "$namespace" rollout status "deployment/$1" --timeout=10m
}

# Sets upstream $1's `version` in the ConfigMap's sluice.yaml. Only that key of the ConfigMap is
# patched: weights.yaml belongs to sluice-control, and rewriting it would count as a hand edit
# (which pauses a rollout). The edited file must pass `sluice-proxy --check` first: a bad file
# would be refused by every sidecar anyway, but the pipeline should fail here, not later.
set_version() {
    local upstream=$1 work
    work=$(mktemp -d)
    trap 'rm -rf "$work"' RETURN
    kubectl -n "$namespace" get configmap "$configmap" -o jsonpath='{.data.sluice\.yaml}' >"$work/sluice.yaml"
    kubectl -n "$namespace" get configmap "$configmap" -o jsonpath='{.data.weights\.yaml}' >"$work/weights.yaml"
    UPSTREAM=$upstream VERSION=$version \
        yq -i '.upstreams[strenv(UPSTREAM)].version = strenv(VERSION)' "$work/sluice.yaml"
    sluice-proxy --check --config "$work/sluice.yaml"
    FILE="$work/sluice.yaml" \
        yq -n -o json '{"data": {"sluice.yaml": load_str(strenv(FILE))}}' >"$work/patch.json"
    kubectl -n "$namespace" patch configmap "$configmap" --type merge --patch-file "$work/patch.json"
}

case $action in
deploy)
    roll "$app-canary"
    set_version canary
    ;;
promote)
    roll "$app-stable"
    set_version stable
    ;;
*)
    usage
    ;;
esac
