# The job image of the pipelines in examples/ci/: bash, kubectl, yq (v4), sluice-control and
# sluice-proxy (for `--check`), plus canary-release.sh. Build it next to the sluice image:
#   docker build -f examples/ci/tools.Dockerfile -t registry.example.com/sluice-ci:0.1.0 examples/ci
# It holds no credentials: the kubeconfig and the control's token come from the CI's secret
# store at run time.

ARG SLUICE_IMAGE=registry.example.com/sluice:0.1.0

FROM ${SLUICE_IMAGE} AS sluice
FROM docker.io/mikefarah/yq:4 AS yq

FROM docker.io/bitnami/kubectl:1.31
COPY --from=sluice /usr/local/bin/sluice-control /usr/local/bin/sluice-proxy /usr/local/bin/
COPY --from=yq /usr/bin/yq /usr/local/bin/yq
COPY canary-release.sh /usr/local/bin/canary-release.sh
USER 1001
# A shell, not kubectl: CI runners start jobs with their own script.
ENTRYPOINT []
CMD ["bash"]
