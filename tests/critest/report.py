#!/usr/bin/env python3
"""Summaries of critest runs and their comparison (tests/critest/run.sh).

  report.py OUT HANDLER...   reads OUT/HANDLER.json (ginkgo's --json-report) for each
                             handler, writes OUT/HANDLER-summary.txt and, for the first
                             handler against each other one, OUT/compare-FIRST-OTHER.txt:
                             the specs that passed with FIRST and did not with OTHER, each
                             with the first line of its failure. Prints the summary lines.
"""

import json
import os
import sys


def spec_name(spec):
    parts = [t for t in spec.get("ContainerHierarchyTexts") or [] if t]
    parts.append(spec.get("LeafNodeText", ""))
    return " ".join(parts)


def first_line(failure):
    message = (failure or {}).get("Message", "") or ""
    for line in message.splitlines():
        if line.strip():
            return line.strip()[:300]
    return ""


def load(out, handler):
    path = os.path.join(out, handler + ".json")
    try:
        with open(path) as f:
            suites = json.load(f)
    except (OSError, ValueError) as e:
        sys.exit(f"report.py: no critest report for {handler} ({path}): {e}")
    specs = {}
    for suite in suites:
        for spec in suite.get("SpecReports") or []:
            if spec.get("LeafNodeType") != "It":
                continue  # BeforeSuite/AfterSuite nodes are not specs
            specs[spec_name(spec)] = (str(spec.get("State", "")), first_line(spec.get("Failure")))
    return specs


def main():
    if len(sys.argv) < 3:
        sys.exit("usage: report.py OUT HANDLER...")
    out, handlers = sys.argv[1], sys.argv[2:]
    results = {h: load(out, h) for h in handlers}
    for handler, specs in results.items():
        counts = {}
        for state, _ in specs.values():
            counts[state] = counts.get(state, 0) + 1
        ran = len(specs) - counts.get("skipped", 0) - counts.get("pending", 0)
        line = (f"{handler}: {counts.get('passed', 0)} of {ran} specs passed"
                f" ({', '.join(f'{n} {s}' for s, n in sorted(counts.items()))})")
        with open(os.path.join(out, handler + "-summary.txt"), "w") as f:
            f.write(line + "\n\n")
            for name in sorted(specs):
                state, failure = specs[name]
                f.write(f"{state:8} {name}\n")
                if failure and state != "passed":
                    f.write(f"         {failure}\n")
        print(line)
    base = handlers[0]
    for other in handlers[1:]:
        lost = [(name, results[other].get(name, ("missing", ""))) for name, (state, _)
                in sorted(results[base].items())
                if state == "passed" and results[other].get(name, ("missing",))[0] != "passed"]
        path = os.path.join(out, f"compare-{base}-{other}.txt")
        with open(path, "w") as f:
            f.write(f"{len(lost)} specs passed with {base} and not with {other}:\n\n")
            for name, (state, failure) in lost:
                f.write(f"- {name} [{state}]\n    {failure}\n")
        print(f"{len(lost)} specs passed with {base} and not with {other}: {path}")


if __name__ == "__main__":
    main()
