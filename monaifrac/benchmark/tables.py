"""A benchmark's result: tables a person reads (stdout), goals met or not, and the same as one JSON object.

Every verb builds one :class:`Report`: the machine block (:mod:`.machine`), the command, its raw
figures (``results``), :class:`Table` s whose cells are already formatted (what a person reads, and
what ``monaifrac benchmark render`` turns into the README's markdown), goals and notes.
:meth:`Report.emit` prints the tables and writes the JSON (atomically) where asked.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path

SCHEMA = 1


def num(value, digits: int = 3) -> str:
    """A number as a table cell: ``digits`` decimals, "-" for None or NaN."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}"


def spread(s: dict, digits: int = 3, scale: float = 1.0) -> str:
    """A :func:`monaifrac.benchmark.timing.summary` as "median (p25-p75)"."""
    if not s or not s.get("n"):
        return "-"
    return (f"{num(s['median'] * scale, digits)} ({num(s['p25'] * scale, digits)}-"
            f"{num(s['p75'] * scale, digits)})")


def progress(message: str) -> None:
    """A line on stderr while a benchmark runs (stdout holds only the tables)."""
    print(message, file=sys.stderr, flush=True)


@dataclass
class Table:
    """Rows of formatted cells under ``columns``; ``notes`` say what the columns mean."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells) -> None:
        self.rows.append([c if isinstance(c, str) else num(c) for c in cells])

    def text(self) -> str:
        widths = [max(len(str(c)) for c in [h, *(r[i] for r in self.rows)]) for i, h in enumerate(self.columns)]
        # the first column (names) left-aligned, figures right-aligned
        line = lambda cells: "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w)  # noqa: E731
                                       for i, (c, w) in enumerate(zip(cells, widths)))
        out = [self.title, line(self.columns), *(line(r) for r in self.rows)]
        return "\n".join(out + [f"  {n}" for n in self.notes])

    def markdown(self) -> str:
        esc = lambda c: str(c).replace("|", "\\|")  # noqa: E731
        out = [f"| {' | '.join(map(esc, self.columns))} |", "|" + "---|" * len(self.columns)]
        out += [f"| {' | '.join(map(esc, r))} |" for r in self.rows]
        return "\n".join(out)

    def to_json(self) -> dict:
        return {"title": self.title, "columns": self.columns, "rows": self.rows, "notes": self.notes}

    @classmethod
    def from_json(cls, d: dict) -> "Table":
        return cls(d["title"], list(d["columns"]), [list(r) for r in d["rows"]], list(d.get("notes", [])))


@dataclass
class Report:
    """One benchmark run: ``benchmark`` (the verb), ``command`` (argv), ``machine``, ``results`` (raw figures),
    ``tables``, ``goals`` (each ``{"goal", "measured", "met"}``) and ``notes``."""

    benchmark: str
    command: list[str]
    machine: dict
    results: dict = field(default_factory=dict)
    tables: list[Table] = field(default_factory=list)
    goals: list[dict] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def goal(self, goal: str, measured: str, met: bool) -> None:
        self.goals.append({"goal": goal, "measured": measured, "met": bool(met)})

    def text(self) -> str:
        from monaifrac.benchmark.machine import one_line

        parts = [one_line(self.machine), *(t.text() for t in self.tables)]
        parts += [f"goal {g['goal']}: {g['measured']}: {'met' if g['met'] else 'NOT MET'}" for g in self.goals]
        parts += self.notes
        return "\n\n".join(p for p in parts if p)

    def to_json(self) -> dict:
        return {"schema": SCHEMA, "benchmark": self.benchmark, "command": self.command, "machine": self.machine,
                "commit": self.machine.get("commit"), "results": _finite(self.results),
                "tables": [t.to_json() for t in self.tables], "goals": self.goals, "notes": self.notes}

    def emit(self, json_path: str | Path | None = None) -> None:
        """Print the tables and goals; write the JSON to ``json_path`` (atomically) where given."""
        print(self.text(), flush=True)
        if json_path:
            from monaifrac.io import write_json

            write_json(json_path, self.to_json())
            progress(f"wrote {json_path}")


def _finite(obj):
    """``obj`` with NaN and infinities as None: strict JSON, readable by any tool."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
