#!/usr/bin/env bash
# mnn-stress entry point. Bootstraps .venv/ (package + dependencies) on first use, then:
#   ./run.sh [--duration D] [--scenarios PATH]... [mnn-stress run options]
#                                   short soak of the bundled scenarios (default: 90s in all)
#   ./run.sh test [pytest args]     the test suite (what CI runs)
#   ./run.sh mnn-stress ARGS...     any mnn-stress command inside the environment
set -euo pipefail
cd "$(dirname "$0")"

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed

bootstrap() {
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "run.sh: needs Python >= 3.10 as '$PYTHON' (set PYTHON=/path/to/python3)" >&2
    exit 2
  fi
  [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
  local want
  want=$(cat pyproject.toml | sha256sum | cut -c1-16)
  if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$want" ]; then
    echo "run.sh: installing mnn-stress and its dependencies into $VENV/ ..." >&2
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check -e ".[test,reference,ray]"
    echo "$want" > "$STAMP"
  fi
  # compile the package once: with PYTHONDONTWRITEBYTECODE set (as in many containers) every
  # coordinator and worker process would otherwise compile ~100 modules again (~0.15 s each)
  "$VENV/bin/python" -m compileall -q stress >/dev/null
}

bootstrap
case "${1:-}" in
  test)
    shift
    # one pytest worker per core, each test file whole on one (its module fixtures made once);
    # `-n 0` after it runs everything in this process (for pdb)
    exec "$VENV/bin/python" -m pytest -n auto --dist loadfile "$@"
    ;;
  mnn-stress)
    shift
    export MNN_STRESS_PROG="${MNN_STRESS_PROG:-./run.sh mnn-stress}"  # what a run suggests next
    exec "$VENV/bin/mnn-stress" "$@"
    ;;
esac

scenarios=()
budget=()
rest=()
while [ $# -gt 0 ]; do
  case "$1" in
    --scenarios) scenarios+=("$2"); shift 2 ;;
    --duration|--iterations) budget+=("$1" "$2"); shift 2 ;;
    *) rest+=("$1"); shift ;;
  esac
done
[ ${#scenarios[@]} -gt 0 ] || scenarios=(scenarios)
[ ${#budget[@]} -gt 0 ] || budget=(--duration 90s)
# the commands a run suggests next (report, repro, --resume) are typed through this script
export MNN_STRESS_PROG="${MNN_STRESS_PROG:-./run.sh mnn-stress}"
exec "$VENV/bin/mnn-stress" run "${scenarios[@]}" "${budget[@]}" ${rest[@]+"${rest[@]}"}
