#!/usr/bin/env bash
# Mutation testing of the rule modules (docs/developing.md#mutation-testing). Not run in CI.
#
# mutmut changes one operator, constant or argument of lifecycle.py, ledger.py, liveness.py,
# policy.py or messages.py at a time and runs the fast socket-free tests against each change
# (pyproject.toml [tool.mutmut]). A mutant the tests do not notice ("survived") marks a
# guarantee nothing checks, unless it is one of the equivalent mutants listed in the docs.
#
#   scripts/mutation.sh            # every mutant, from scratch (about 5 minutes on 2 shared cores)
#   scripts/mutation.sh --show     # then print the diff of each survivor
#
# Runs at nice 10 with 2 workers so it does not starve other work on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

python -c "import mutmut" 2>/dev/null || pip install -q -e ".[mutation]"
rm -rf mutants  # mutmut keeps results between runs; start over so that changed tests count
nice -n 10 mutmut run --max-children "${MUTMUT_CHILDREN:-2}" || true  # it exits non-zero when mutants survive
mutmut results | sort > mutants/results.txt || true
mutmut export-cicd-stats >/dev/null
python - <<'PY'
import json

s = json.load(open("mutants/mutmut-cicd-stats.json"))
caught = s["killed"] + s["timeout"]
print(f"mutmut: {s['total']} mutants, {caught} killed ({s['timeout']} by timeout), {s['survived']} survived, "
      f"{s['no_tests']} with no test: score {caught / s['total']:.1%}")
PY
echo "not killed (mutants/results.txt; equivalent survivors are listed in docs/developing.md):"
grep -vE ": (killed|timeout)$" mutants/results.txt || echo "  none"
if [[ "${1:-}" == "--show" ]]; then
    for name in $(grep -E ": (survived|no tests)$" mutants/results.txt | awk '{print $1}' | tr -d ':'); do
        echo "=== $name"
        mutmut show "$name" | grep -E '^[-+]' | grep -vE '^(\+\+\+|---)'
    done
fi
