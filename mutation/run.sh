#!/usr/bin/env bash
# Mutation testing of the detection-critical modules (see docs/development.md, "Mutation testing").
#   mutation/run.sh [MUTANT-GLOB ...]     e.g. 'stress.analysis.summary.x_verdict__mutmut_*'
# Clones HEAD into a scratch directory (mutmut rewrites its working copy), makes a virtual
# environment with mutmut and the subprocess plugin, runs the mutants, prints the tables.
# Slow: every mutant reruns the tests that reach it, real worker processes included.
set -euo pipefail
REPO=$(cd "$(dirname "$0")/.." && pwd)
WORK=${MUTATION_WORK:-$REPO/.mutation}
VENV=$WORK/venv
CLONE=$WORK/clone
export MNN_STRESS_CACHE=${MNN_STRESS_CACHE:-$WORK/cache}
mkdir -p "$WORK" "$MNN_STRESS_CACHE"
rm -rf "$CLONE"
git clone -q "$REPO" "$CLONE"
cat "$REPO/mutation/mutmut.toml" >> "$CLONE/pyproject.toml"
if [ ! -x "$VENV/bin/mutmut" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q -e "$CLONE[test]" 'mutmut==3.8.1'
fi
"$VENV/bin/pip" install -q --no-deps -e "$CLONE"
SITE=$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
printf '%s\nimport mutsub_boot\n' "$REPO/mutation" > "$SITE/mutsub.pth"
cd "$CLONE"
nice -n 19 "$VENV/bin/mutmut" run --max-children 2 "$@"
"$VENV/bin/python" "$REPO/mutation/report.py" "${@:-*}"
