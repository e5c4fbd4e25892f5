#!/usr/bin/env bash
# shellcheck disable=SC2317 # the step functions run through run_step, which shellcheck cannot follow
# Offline checks of everything under deploy/. Run from any directory:
#
#   bash deploy/validate.sh
#
#  1. render: the chart, rendered with helm-sdkpy (Helm as a library; no helm binary, no cluster)
#     and `helm lint`ed with the same values, for deploy/manifests/values.yaml (the defaults plus
#     the queue URL, which has no default) and for each ci/<provider>-values.yaml;
#  2. values schema: values.schema.json rejects the pure defaults (no queue) and typical typos;
#  3. router config: the config.yaml each render holds uses only keys of the router's config
#     contract, and every ${VAR} in it is set in the Deployment's environment;
#  4. kubernetes-validate --strict against Kubernetes 1.29 and 1.37, on every render and on
#     deploy/manifests; `kubectl kustomize deploy/manifests` when kubectl is installed;
#  5. checkov (kubernetes framework) on all of them; deliberate findings are skipped in the
#     templates with checkov.io/skipN annotations that give the reason;
#  6. promtool: check rules on the alerts and on the PrometheusRule each render holds (the chart
#     rewrites a threshold), the alert unit tests, and every dashboard query;
#  7. drift: deploy/manifests, deploy/prometheus/alerts.yaml and deploy/grafana/*.json equal a
#     fresh deploy/render.sh.
#
# Tools: Python >= 3.12 must exist (pyenv's is found). helm-sdkpy and kubernetes-validate are
# installed from PyPI into a venv under ${XDG_CACHE_HOME:-~/.cache}/eviction-router-ci, checkov too
# unless it is on PATH, and promtool comes from Debian's `prometheus` package (installed when
# running as root). Each step prints PASS or FAIL; the script exits non-zero if any failed.
set -euo pipefail
# shellcheck source-path=SCRIPTDIR source=lib/tools.sh
source "$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/lib/tools.sh"

KUBE_VERSIONS=(1.29.0 1.37.0)
PROVIDERS=(aws azure gcp)

# --- tools -------------------------------------------------------------------------------------
step "tools"
TOOLS_BIN="$(ensure_venv venv "${DEPLOY_DIR}/lib/requirements.txt")"
PY="${TOOLS_BIN}/python"
KUBE_VALIDATE="${TOOLS_BIN}/kubernetes-validate"

if ! command -v promtool >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    step "installing promtool (Debian package prometheus)"
    export DEBIAN_FRONTEND=noninteractive
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; } >&2 ||
      die "cannot install the Debian package prometheus (promtool)"
  fi
  command -v promtool >/dev/null 2>&1 ||
    die "promtool is not on PATH: install the Debian package prometheus (apt-get install prometheus) or a Prometheus release"
fi
if command -v checkov >/dev/null 2>&1; then
  CHECKOV="$(command -v checkov)"
else
  CHECKOV="$(ensure_venv venv-checkov "${DEPLOY_DIR}/lib/requirements-checkov.txt")/checkov"
fi
printf 'python %s, helm-sdkpy %s, kubernetes-validate %s, checkov %s, %s\n' \
  "$("${PY}" -c 'import platform; print(platform.python_version())')" \
  "$("${PY}" -c 'import importlib.metadata as m; print(m.version("helm-sdkpy"))')" \
  "$("${PY}" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')" \
  "$("${CHECKOV}" --version 2>/dev/null)" "$(promtool --version 2>&1 | head -1)"

work="$(mktemp -d)"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${work}/rendered"

declare -a SUMMARY=()
failed=0
# run_step NAME COMMAND...: runs COMMAND in a subshell with errexit, records PASS or FAIL.
run_step() {
  local name="$1" rc
  shift
  step "${name}"
  set +e
  (
    set -euo pipefail
    "$@"
  )
  rc=$?
  set -e
  if ((rc == 0)); then
    SUMMARY+=("PASS  ${name}")
  else
    SUMMARY+=("FAIL  ${name}")
    failed=1
  fi
}

# Rendered outputs: name -> values files.
RENDERS=(default "${PROVIDERS[@]}")
values_for() {
  case "$1" in
    default) printf '%s\n' "${DEPLOY_DIR}/manifests/values.yaml" ;;
    *) printf '%s\n' "${CHART_DIR}/ci/$1-values.yaml" ;;
  esac
}

# --- 1. render + lint --------------------------------------------------------------------------
render_all() {
  local name
  for name in "${RENDERS[@]}"; do
    render_chart "${work}/rendered/${name}.yaml" "$(values_for "${name}")"
    printf 'rendered + linted: %-8s %3d documents (%s)\n' "${name}" \
      "$(grep -c '^kind:' "${work}/rendered/${name}.yaml")" "$(values_for "${name}" | sed "s|${REPO_DIR}/||")"
  done
}
run_step "render + helm lint (helm-sdkpy): default, ${PROVIDERS[*]}" render_all

# --- 2. the values schema rejects what it should -----------------------------------------------
# expect_rejected DESCRIPTION EXPECTED_MESSAGE_REGEX VALUES_YAML
expect_rejected() {
  local description="$1" expected="$2" values="${work}/bad-values.yaml" err="${work}/bad.err"
  printf '%s\n' "$3" >"${values}"
  if "${PY}" "${DEPLOY_DIR}/lib/helm_render.py" --chart "${CHART_DIR}" -f "${values}" --output "${work}/bad.yaml" 2>"${err}"; then
    echo "not rejected: ${description}" >&2
    return 1
  fi
  if ! grep -Eq "${expected}" "${err}"; then
    echo "rejected for another reason than expected (${expected}): ${description}" >&2
    cat "${err}" >&2
    return 1
  fi
  printf 'rejected as expected: %s\n' "${description}"
}
schema_negatives() {
  expect_rejected "the pure defaults (aws without a queue URL)" "/aws/queueUrl" "{}"
  expect_rejected "an unknown top-level key" "additional properties 'provdier'" "provdier: gcp"
  expect_rejected "a misspelt router key" "additional properties 'concurency'" "$(printf 'aws: {queueUrl: https://sqs.us-east-1.amazonaws.com/1/q}\nrouter: {concurency: 8}')"
  expect_rejected "an unknown provider" "/provider" "provider: ibm"
  expect_rejected "azure without namespace and queue" "/azure" "provider: azure"
  expect_rejected "azure sas without its Secret" "/azure/connectionStringSecret" "$(printf 'provider: azure\nazure: {namespace: my-namespace, queue: q, auth: sas}')"
  expect_rejected "a gcp subscription that is not a full path" "/gcp/subscription" "$(printf 'provider: gcp\ngcp: {subscription: eviction-router}')"
  expect_rejected "the webhook without its Secret" "/webhook/secretRef" "$(printf 'aws: {queueUrl: https://sqs.us-east-1.amazonaws.com/1/q}\nwebhook: {enabled: true}')"
  expect_rejected "an unknown sink key" "additional properties 'secret'" "$(printf 'aws: {queueUrl: https://sqs.us-east-1.amazonaws.com/1/q}\nsinks: [{type: webhook, url: "https://x.example", secret: s}]')"
  expect_rejected "two replicas without leader election" "needs leaderElection.enabled" "$(printf 'aws: {queueUrl: https://sqs.us-east-1.amazonaws.com/1/q}\nleaderElection: {enabled: false}')"
  expect_rejected "a shutdown grace longer than the pod's" "terminationGracePeriodSeconds must be at least" "$(printf 'aws: {queueUrl: https://sqs.us-east-1.amazonaws.com/1/q}\nrouter: {shutdownGraceSeconds: 30}')"
  expect_rejected "a pod grace with no room for the shutdown tail" "terminationGracePeriodSeconds must be at least" "$(printf 'aws: {queueUrl: https://sqs.us-east-1.amazonaws.com/1/q}\nrouter: {shutdownGraceSeconds: 25}')"
}
run_step "values schema and chart checks reject bad values" schema_negatives

# --- 3. router config contract -----------------------------------------------------------------
config_contract() {
  "${PY}" "${DEPLOY_DIR}/lib/check_rendered.py" config "${work}"/rendered/*.yaml "${DEPLOY_DIR}/manifests/eviction-router.yaml"
  printf 'config.yaml keys, and the environment variables it references: ok in %s\n' "$(cd "${work}/rendered" && echo *.yaml) deploy/manifests"
}
run_step "router config contract in every render" config_contract

# --- 4. kubernetes-validate --strict -----------------------------------------------------------
# kubernetes-validate has no option to skip kinds; for kinds it has no schema for (the Prometheus
# Operator's ServiceMonitor and PrometheusRule) it prints a WARN and passes. Such WARNs are
# accepted for those two kinds only; any other WARN or failure fails the step. The rules inside
# PrometheusRule are checked by promtool below.
kube_validate() {
  local version out
  local -a files=("${work}"/rendered/*.yaml "${DEPLOY_DIR}/manifests/namespace.yaml" "${DEPLOY_DIR}/manifests/eviction-router.yaml")
  for version in "${KUBE_VERSIONS[@]}"; do
    out="${work}/kubernetes-validate-${version}.log"
    if ! "${KUBE_VALIDATE}" --strict --quiet -k "${version}" "${files[@]}" >"${out}" 2>&1; then
      cat "${out}" >&2
      return 1
    fi
    if grep -v -E "Couldn't find schema for kind (ServiceMonitor|PrometheusRule) with api version monitoring\.coreos\.com/v1" "${out}" | grep -q .; then
      cat "${out}" >&2
      return 1
    fi
    printf 'kubernetes %s: %d files valid (strict); no schema for ServiceMonitor/PrometheusRule: %d documents not checked\n' \
      "${version}" "${#files[@]}" "$(grep -c "Couldn't find schema" "${out}" || true)"
  done
  if command -v kubectl >/dev/null 2>&1; then
    kubectl kustomize "${DEPLOY_DIR}/manifests" >"${work}/kustomize.yaml"
    printf 'kubectl kustomize deploy/manifests: %d documents\n' "$(grep -c '^kind:' "${work}/kustomize.yaml")"
  else
    printf 'kubectl not found: kustomize build of deploy/manifests not checked\n'
  fi
}
run_step "kubernetes-validate --strict (${KUBE_VERSIONS[*]}) + kustomize build" kube_validate

# --- 5. checkov --------------------------------------------------------------------------------
# checkov's helm framework needs the helm binary, so it scans the rendered manifests instead.
run_checkov() {
  local dir="${work}/checkov"
  mkdir -p "${dir}"
  cp "${work}"/rendered/*.yaml "${dir}/"
  cp "${DEPLOY_DIR}/manifests/namespace.yaml" "${DEPLOY_DIR}/manifests/eviction-router.yaml" "${dir}/"
  "${CHECKOV}" -d "${dir}" --framework kubernetes --skip-download --quiet --compact
}
run_step "checkov --framework kubernetes (rendered manifests)" run_checkov

# --- 6. promtool -------------------------------------------------------------------------------
run_promtool() {
  local name
  promtool check rules "${DEPLOY_DIR}/prometheus/alerts.yaml"
  (cd "${DEPLOY_DIR}/prometheus" && promtool test rules alerts.test.yaml)
  for name in "${PROVIDERS[@]}"; do
    "${PY}" "${DEPLOY_DIR}/lib/check_rendered.py" rules "${work}/rendered/${name}.yaml" "${work}/prometheusrule-${name}.yaml"
    promtool check rules "${work}/prometheusrule-${name}.yaml"
  done
  "${PY}" "${DEPLOY_DIR}/lib/check_rendered.py" dashboard "${CHART_DIR}/files/dashboards/eviction-router.json" "${work}/dashboard-queries.yaml"
  promtool check rules "${work}/dashboard-queries.yaml"
}
run_step "promtool: check rules, unit tests, rendered PrometheusRules, dashboard queries" run_promtool

# --- 7. drift ----------------------------------------------------------------------------------
run_step "drift: committed generated files == fresh deploy/render.sh" bash "${DEPLOY_DIR}/render.sh" --check

printf '\n==> summary\n'
printf '%s\n' "${SUMMARY[@]}"
passed=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^PASS' || true)
failures=$(printf '%s\n' "${SUMMARY[@]}" | grep -c '^FAIL' || true)
printf '\ndeploy: %d passed, %d failed\n' "${passed}" "${failures}"
exit "${failed}"
