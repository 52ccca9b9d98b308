"""The unit every source reader produces and the data stage consumes: one film and its annotations.

A source (the FracAtlas layout, a Labelme folder) is read into a list of :class:`Case`
objects plus a list of :class:`Problem` objects. Nothing is written while reading, so the
error policy (``--on-error fail|skip``) is applied in one place, by ``prepare``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

ON_ERROR_CHOICES = ("fail", "skip")


@dataclass
class Problem:
    """Something wrong with the input, tied to a file and, where known, to a case.

    ``fatal`` problems make the case unusable (under ``--on-error skip`` it is left out and
    listed); non-fatal ones are warnings kept in the report (a truncated JPG that was
    recovered, a clipped polygon).
    """

    file: str
    message: str
    case_id: str | None = None
    fatal: bool = True

    def __str__(self) -> str:
        where = f" (case {self.case_id})" if self.case_id else ""
        return f"{self.file}{where}: {self.message}"

    def to_json(self) -> dict:
        return {"case": self.case_id, "file": self.file, "problem": self.message}


class DataError(RuntimeError):
    """Input the data stage cannot go on with; the message names the file and the problem."""


@dataclass
class Case:
    """One film and everything known about it before its pixels are read.

    Attributes:
        id: the film's id, its file stem (``IMG0000019``).
        image: path of the source film.
        polygons: class index → polygons (flat ``[x1, y1, ...]`` lists, displayed frame).
        bone_annotated: True when bone polygons come from an annotator (Labelme); otherwise
            bone is the Li pseudo-label.
        fractured: whether the film shows a fracture, from the source's own table.
        body_part: e.g. ``"hand"``, ``"leg+hip"``; ``"unknown"`` where the source is silent.
        official_split: ``train``/``valid``/``test`` from the source's split lists, or None.
        expected_size: (width, height) the annotation file claims for the displayed film.
        annotation_file: the file the polygons came from, for error messages.
        problems: what the reader found wrong with this case.
    """

    id: str
    image: Path
    polygons: dict[int, list[list[float]]] = field(default_factory=dict)
    bone_annotated: bool = False
    fractured: bool = False
    body_part: str = "unknown"
    official_split: str | None = None
    expected_size: tuple[int, int] | None = None
    annotation_file: str | None = None
    problems: list[Problem] = field(default_factory=list)

    @property
    def n_fracture_polygons(self) -> int:
        from monaifrac.data.masks import FRACTURE

        return len(self.polygons.get(FRACTURE, []))
