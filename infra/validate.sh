#!/usr/bin/env bash
# Offline checks for the Terraform under infra/:
#   1. terraform fmt -check on every cloud's directory that exists;
#   2. terraform init (from a local provider mirror) + validate for infra/aws
#      and its examples (complete, asg-lifecycle), and the offline plan tests
#      of the module and of the asg-lifecycle example;
#   3. checkov over infra/.
#
# No network is needed. The hashicorp/aws provider must be present in a
# filesystem provider mirror (the layout `terraform init -plugin-dir` reads).
# Set TF_PLUGIN_DIR to the mirror's root, or let the script search for it.
#
# checkov must be on PATH (pip install checkov).
set -euo pipefail

INFRA_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

# Terraform modules validated from the local mirror, relative to infra/.
TF_MODULE_DIRS=(
  aws
  aws/examples/complete
  aws/examples/asg-lifecycle
)
# Modules whose tests/*.tftest.hcl run offline with `terraform test`.
TF_TEST_DIRS=(
  aws
  aws/examples/asg-lifecycle
)

export TF_IN_AUTOMATION=1
export CHECKPOINT_DISABLE=1
# A TF_CLI_CONFIG_FILE that points nowhere only makes every command warn.
if [[ -n "${TF_CLI_CONFIG_FILE:-}" && ! -e "${TF_CLI_CONFIG_FILE}" ]]; then
  unset TF_CLI_CONFIG_FILE
fi

log() { printf '\n==> %s\n' "$*"; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

command -v terraform >/dev/null 2>&1 || die "terraform is not on PATH (Terraform >= 1.7 is required)."
command -v checkov >/dev/null 2>&1 || die "checkov is not on PATH. Install it first: pip install checkov"

# --- 1. formatting -----------------------------------------------------------
log "terraform fmt -check -recursive ${INFRA_DIR}"
terraform fmt -check -recursive -diff "${INFRA_DIR}"

# --- 2. init + validate from the local provider mirror -----------------------
if [[ -n "${TF_PLUGIN_DIR:-}" ]]; then
  plugin_dir="${TF_PLUGIN_DIR}"
else
  aws_mirror="$(find / -maxdepth 6 -type d -path '*/hashicorp/aws' 2>/dev/null | head -1 || true)"
  [[ -n "${aws_mirror}" ]] || die "no hashicorp/aws provider mirror found (looked for <mirror>/<host>/hashicorp/aws up to depth 6). Set TF_PLUGIN_DIR to the mirror directory that terraform init -plugin-dir expects."
  plugin_dir="$(dirname "$(dirname "$(dirname "${aws_mirror}")")")"
fi
compgen -G "${plugin_dir}/*/hashicorp/aws" >/dev/null || die "${plugin_dir} does not contain <host>/hashicorp/aws"
log "provider mirror: ${plugin_dir}"

# Work on a copy so that .terraform/ and .terraform.lock.hcl never land in the tree.
work_dir="$(mktemp -d)"
trap 'rm -rf "${work_dir}"' EXIT
cp -R "${INFRA_DIR}/." "${work_dir}/"
find "${work_dir}" \( -name .terraform -o -name .terraform.lock.hcl -o -name '*.tfstate' -o -name '*.tfstate.backup' \) -prune -exec rm -rf {} +

for dir in "${TF_MODULE_DIRS[@]}"; do
  log "terraform init + validate: infra/${dir}"
  terraform -chdir="${work_dir}/${dir}" init -backend=false -input=false -no-color -plugin-dir="${plugin_dir}" >"${work_dir}/init.log" 2>&1 || {
    cat "${work_dir}/init.log" >&2
    die "terraform init failed in infra/${dir}"
  }
  terraform -chdir="${work_dir}/${dir}" validate -no-color
done

# The plan tests use override_data, which needs Terraform >= 1.7.
tf_version="$(terraform version -json | sed -n 's/.*"terraform_version": *"\([0-9][0-9.]*\).*/\1/p')"
if [[ "$(printf '%s\n' 1.7.0 "${tf_version}" | sort -V | head -1)" != "1.7.0" ]]; then
  die "terraform ${tf_version:-unknown} cannot run the plan tests; Terraform >= 1.7 is required."
fi
for dir in "${TF_TEST_DIRS[@]}"; do
  log "terraform test: infra/${dir}"
  terraform -chdir="${work_dir}/${dir}" test -no-color
done

# --- 3. static analysis ------------------------------------------------------
# --skip-download: no calls to the vendor's platform (runs offline).
log "checkov -d ${INFRA_DIR} --framework terraform"
checkov -d "${INFRA_DIR}" --framework terraform --quiet --compact --skip-download

log "all infra checks passed"
