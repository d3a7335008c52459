#!/usr/bin/env bash
# Mutation testing (docs/developing.md#mutation-testing). Not run in CI.
#
# mutmut changes one operator, constant or argument of a module at a time and runs the tests
# that reach the changed function against each change. A mutant the tests do not notice
# ("survived") marks a guarantee nothing checks, unless it is one of the equivalent mutants
# listed in the docs. Two modes, each with its own table in pyproject.toml:
#
#   scripts/mutation.sh            # the rule modules (lifecycle, ledger, liveness, policy, messages)
#                                  # against the socket-free tests, [tool.mutmut]: about 2 minutes
#   scripts/mutation.sh --io       # acks, listeners, health, dispatch against the fastest socket
#                                  # tests that reach them, [tool.mutmut-io]: see the docs for the time
#   scripts/mutation.sh --io acks.py health.py   # only these of the --io modules
#   scripts/mutation.sh [--io] --show   # then print the diff of each survivor
#
# Every run starts from scratch. Runs at nice 10 with 2 workers (MUTMUT_CHILDREN) so it does not
# starve other work on the machine. Results: mutants/ (rules) or build/mutation-io/mutants/ (--io).
set -euo pipefail
cd "$(dirname "$0")/.."

io=0
show=0
modules=()
for arg in "$@"; do
    case "$arg" in
        --io) io=1 ;;
        --show) show=1 ;;
        *.py) modules+=("src/slack_socket_mode/$arg") ;;
        *) echo "usage: $0 [--io [module.py ...]] [--show]" >&2; exit 2 ;;
    esac
done

python -c "import mutmut" 2>/dev/null || pip install -q -e ".[mutation]"
if [[ $io == 1 ]]; then
    # mutmut reads only [tool.mutmut] from ./pyproject.toml and writes ./mutants: run it on a copy
    # of the project in which [tool.mutmut-io] is the [tool.mutmut] table.
    rm -rf build/mutation-io
    mkdir -p build/mutation-io
    cp -r src tests benchmarks build/mutation-io/
    find build/mutation-io -name __pycache__ -prune -exec rm -rf {} +
    sed -e 's/^\[tool\.mutmut\]$/[tool.mutmut-rules]/' -e 's/^\[tool\.mutmut-io\]$/[tool.mutmut]/' \
        pyproject.toml >build/mutation-io/pyproject.toml
    if [[ ${#modules[@]} -gt 0 ]]; then  # only these of the --io modules, e.g. --io acks.py health.py
        python - "${modules[@]}" <<'PY'
import re
import sys

path = "build/mutation-io/pyproject.toml"
text = open(path).read()
listed = ", ".join(f'"{m}"' for m in sys.argv[1:])
text = re.sub(r"(\[tool\.mutmut\]\n(?:.*\n)*?)only_mutate = \[[^]]*\]", rf"\1only_mutate = [{listed}]", text, count=1)
open(path, "w").write(text)
PY
    fi
    cd build/mutation-io
fi
rm -rf mutants  # mutmut keeps results between runs; start over so that changed tests count
nice -n 10 mutmut run --max-children "${MUTMUT_CHILDREN:-2}" || true  # it exits non-zero when mutants survive
mutmut results --all true | sort >mutants/results.txt || true
mutmut export-cicd-stats >/dev/null
python - <<'PY'
import collections
import json

s = json.load(open("mutants/mutmut-cicd-stats.json"))
caught = s["killed"] + s["timeout"]
print(f"mutmut: {s['total']} mutants, {caught} killed ({s['timeout']} by timeout), {s['survived']} survived, "
      f"{s['no_tests']} with no test: score {caught / s['total']:.1%}")
per = collections.defaultdict(collections.Counter)
for line in open("mutants/results.txt"):
    name, _, status = line.strip().rpartition(": ")
    if name:
        per[name.split(".")[1]][status] += 1  # slack_socket_mode.<module>.x_<function>__mutmut_<n>
for module, c in sorted(per.items()):
    total = sum(c.values())
    caught = c["killed"] + c["timeout"]
    print(f"  {module}: {total} mutants, {caught} killed ({c['timeout']} by timeout), {total - caught} not: "
          f"{caught / total:.1%}")
PY
echo "not killed ($PWD/mutants/results.txt; equivalent survivors are listed in docs/developing.md):"
grep -vE ": (killed|timeout)$" mutants/results.txt || echo "  none"
if [[ $show == 1 ]]; then
    for name in $(grep -vE ": (killed|timeout)$" mutants/results.txt | awk '{print $1}' | tr -d ':'); do
        echo "=== $name"
        mutmut show "$name" | grep -E '^[-+]' | grep -vE '^(\+\+\+|---)'
    done
fi
