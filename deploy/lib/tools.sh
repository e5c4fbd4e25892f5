# shellcheck shell=bash
# Functions shared by deploy/render.sh and deploy/validate.sh: finding a Python >= 3.12 and keeping
# the Python tools in venvs under a cache directory, installed from PyPI on first use.
#
# EVICTION_ROUTER_PYTHON  a Python >= 3.12 to use (default: searched for)
# EVICTION_ROUTER_CACHE   where the venvs live (default: ${XDG_CACHE_HOME:-$HOME/.cache}/eviction-router-ci)

DEPLOY_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034 # used by the scripts that source this file
REPO_DIR="$(cd "${DEPLOY_DIR}/.." && pwd)"
CHART_DIR="${DEPLOY_DIR}/helm/eviction-router"
CACHE_DIR="${EVICTION_ROUTER_CACHE:-${XDG_CACHE_HOME:-${HOME}/.cache}/eviction-router-ci}"

step() { printf '\n==> %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

# Prints the path of a Python >= 3.12 (helm-sdkpy's minimum), or fails.
find_python() {
  local candidate
  local -a candidates=()
  [[ -n "${EVICTION_ROUTER_PYTHON:-}" ]] && candidates+=("${EVICTION_ROUTER_PYTHON}")
  candidates+=(python3.14 python3.13 python3.12 python3)
  # pyenv installs, newest first.
  if [[ -d "${PYENV_ROOT:-${HOME}/.pyenv}/versions" ]]; then
    while IFS= read -r candidate; do
      candidates+=("${candidate}")
    done < <(printf '%s\n' "${PYENV_ROOT:-${HOME}/.pyenv}"/versions/3.*/bin/python | grep -v '\*' | sort -rV)
  fi
  for candidate in "${candidates[@]}"; do
    command -v "${candidate}" >/dev/null 2>&1 || continue
    if "${candidate}" -c 'import sys, venv; sys.exit(0 if sys.version_info >= (3, 12) else 1)' 2>/dev/null; then
      command -v "${candidate}"
      return 0
    fi
  done
  die "no Python >= 3.12 found (helm-sdkpy, which renders the chart, needs one). Install one (e.g. pyenv install 3.12) or set EVICTION_ROUTER_PYTHON to its path."
}

# ensure_venv NAME REQUIREMENTS_FILE: creates or refreshes ${CACHE_DIR}/NAME with the pinned
# requirements, and prints its bin directory. A stamp of the requirements and the Python version
# avoids reinstalling on every run.
ensure_venv() {
  local name="$1" requirements="$2" python venv stamp
  python="$(find_python)"
  venv="${CACHE_DIR}/${name}"
  stamp="$({ cat "${requirements}"; "${python}" -VV; } | sha256sum | cut -d' ' -f1)"
  if [[ ! -x "${venv}/bin/python" || "$(cat "${venv}/.stamp" 2>/dev/null)" != "${stamp}" ]]; then
    step "installing $(grep -v '^#' "${requirements}" | xargs) into ${venv}"
    rm -rf "${venv}"
    mkdir -p "${CACHE_DIR}"
    "${python}" -m venv "${venv}" || die "cannot create a venv with ${python}"
    "${venv}/bin/python" -m pip install --quiet --disable-pip-version-check -r "${requirements}" >&2 ||
      die "cannot install ${requirements} from PyPI"
    printf '%s\n' "${stamp}" >"${venv}/.stamp"
  fi
  printf '%s\n' "${venv}/bin"
}

# render_chart OUTPUT [VALUES_FILE...]: renders the chart (release and namespace eviction-router)
# with helm-sdkpy, lints it with the same values, and writes the manifests to OUTPUT.
render_chart() {
  local output="$1"
  shift
  local -a args=()
  local values
  for values in "$@"; do
    args+=(-f "${values}")
  done
  "${TOOLS_BIN:?call ensure_venv first}/python" "${DEPLOY_DIR}/lib/helm_render.py" --lint \
    --chart "${CHART_DIR}" --release eviction-router --namespace eviction-router \
    "${args[@]}" --output "${output}"
}
