"""Kill rates of a mutmut 3 run (``mutants/**/*.meta``) for the mutants matching the globs.

Usage, in the clone mutmut ran in: ``python report.py 'GLOB' ...`` prints the totals per module
and per function, then the survivors. Kill rate = (killed + timeout) / (killed + timeout +
survived); suspicious and "no tests" are listed and left out; "not checked" = not run.
"""

from __future__ import annotations

import collections
import fnmatch
import glob
import json
import sys

from mutmut.stats import status_by_exit_code

COLUMNS = ("killed", "survived", "timeout", "suspicious", "no tests", "not checked")


def results(patterns: list[str]) -> list[tuple[str, str]]:
    """(mutant name, status) for every mutant matching a pattern."""
    found = []
    for meta in glob.glob("mutants/**/*.meta", recursive=True):
        with open(meta) as file:
            codes = json.load(file)["exit_code_by_key"]
        for key, code in codes.items():
            if any(fnmatch.fnmatch(key, p) for p in patterns):
                found.append((key, status_by_exit_code[code]))
    return sorted(found)


def row(name: str, counts: collections.Counter) -> str:
    judged = counts["killed"] + counts["survived"] + counts["timeout"]
    caught = counts["killed"] + counts["timeout"]
    rate = f"{100 * caught / judged:.1f}%" if judged else "n/a"
    cells = " | ".join(str(counts[c]) for c in COLUMNS)
    return f"| {name} | {sum(counts.values())} | {cells} | {rate} |"


def table(title: str, groups: dict[str, collections.Counter]) -> None:
    print(f"\n## {title}\n")
    print(f"| scope | mutants | {' | '.join(COLUMNS)} | kill rate |")
    print("|---" * (len(COLUMNS) + 3) + "|")
    for name, counts in sorted(groups.items()):
        print(row(f"`{name}`", counts))


def main(patterns: list[str]) -> None:
    found = results(patterns)
    total: collections.Counter = collections.Counter()
    modules: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    functions: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for key, status in found:
        total[status] += 1
        modules[key.split(".x")[0]][status] += 1
        functions[key.rsplit("__mutmut_", 1)[0]][status] += 1
    table("Totals", {"all selected": total, **modules})
    table("Per function", functions)
    print("\n## Survivors\n")
    for key, status in found:
        if status in ("survived", "suspicious", "no tests"):
            print(status, key)


if __name__ == "__main__":
    main(sys.argv[1:] or ["*"])
