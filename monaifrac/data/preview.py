"""PNG overlays of prepared cases, so that a person can see that masks sit on the fractures."""

from __future__ import annotations

import json
from pathlib import Path

from monaifrac.data.cases import DataError
from monaifrac.data.prepare import DATALIST_NAME
from monaifrac.io import from_monai_frame, read_nifti, write_png
from monaifrac.visualize import overlay

PREVIEW_DIR = "previews"


def write_previews(prepared_dir: Path | str, n: int = 8, ids: list[str] | None = None) -> list[Path]:
    """Write ``previews/<id>.png`` for the named ``ids``, or else the first ``n`` fractured cases.

    Returns:
        the paths written.
    """
    prepared_dir = Path(prepared_dir)
    datalist_path = prepared_dir / DATALIST_NAME
    if not datalist_path.is_file():
        raise DataError(f"{datalist_path}: not found (run `monaifrac prepare` first)")
    items = [item for section in json.loads(datalist_path.read_text()).values() for item in section]
    by_id = {item["id"]: item for item in items}
    if ids:
        unknown = [i for i in ids if i not in by_id]
        if unknown:
            raise DataError(f"{datalist_path}: no case {', '.join(unknown)}")
        chosen = [by_id[i] for i in ids]
    else:
        chosen = sorted(items, key=lambda it: (not it["fractured"], it["id"]))[:n]
    written = []
    for item in chosen:
        image = from_monai_frame(read_nifti(prepared_dir / item["image"]))
        label = from_monai_frame(read_nifti(prepared_dir / item["label"]))
        path = prepared_dir / PREVIEW_DIR / f"{item['id']}.png"
        write_png(path, overlay(image, label))
        written.append(path)
    return written
