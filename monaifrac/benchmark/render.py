"""``monaifrac benchmark render RESULT.json ...``: benchmark results as the markdown of the README's Performance
sections (README.md and bundle/docs/README.md), so those sections are regenerated, never retyped.

For each result: a line naming the command, commit and machine, then each of its tables in markdown,
then its goals as a table (goal, measured, met).
"""

from __future__ import annotations

import json
from pathlib import Path


def add_arguments(p) -> None:
    p.add_argument("results", nargs="+", help="JSON files written by `monaifrac benchmark VERB --json OUT`")
    p.add_argument("--out", help="write the markdown here (default: stdout)")


def command(argv: list[str]) -> str:
    """The command that measured, without where it wrote its JSON."""
    out, skip = [], False
    for word in argv:
        if skip:
            skip = False
        elif word == "--json":
            skip = True
        elif not word.startswith("--json="):
            out.append(word)
    return " ".join(out)


def render(result: dict) -> str:
    """One result's markdown: the command, commit and machine; each table with its notes; the goals; the notes
    (a note of several lines, e.g. a profile, as a text block)."""
    from monaifrac.benchmark.tables import Table

    m = result["machine"]
    parts = [f"`{command(result['command'])}` (commit {result.get('commit') or 'unknown'}; {m.get('cpu')}, "
             f"{m.get('cores_available')} cores available, torch {m.get('torch')}, {m.get('torch_threads')} threads"
             + (f", GPU {m['gpu']}" if m.get("gpu") else ", no GPU")
             + (f", load average {m['load_avg_1min']} at the start" if m.get("load_avg_1min") is not None else "")
             + "):"]
    for t in result.get("tables", []):
        table = Table.from_json(t)
        parts.append(f"*{table.title}*\n\n{table.markdown()}" + ("\n\n" + "; ".join(table.notes) if table.notes
                                                                  else ""))
    goals = result.get("goals") or []
    if goals:
        parts.append(Table("goals", ["goal", "measured", ""],
                           [[g["goal"], g["measured"], "met" if g["met"] else "not met"] for g in goals]).markdown())
    parts += [f"```text\n{n}\n```" if "\n" in n else n for n in result.get("notes", [])]
    return "\n\n".join(parts) + "\n"


def main(args) -> int:
    import sys

    out = []
    for path in args.results:
        try:
            result = json.loads(Path(path).read_text())
            out.append(render(result))
        except (OSError, ValueError, KeyError, TypeError) as err:
            print(f"monaifrac benchmark render: error: {path}: not a benchmark result ({err})", file=sys.stderr)
            return 2
    text = "\n".join(out)
    if args.out:
        from monaifrac.io import write_text

        write_text(args.out, text)
    else:
        print(text, end="")
    return 0
