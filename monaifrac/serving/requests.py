"""Checks on what a MONAI Label client sends, before any of it reaches the bundle.

MONAI Label 0.8.5 answers every failure of its infer endpoint with a bare 500, treats any
``image`` value that exists on disk as a path to read (so ``image=../../x`` or an absolute path
reads outside the studies folder), and leaves a rejected upload behind in the temporary folder.
These functions decide, with :func:`monaifrac.io.read_radiograph`, what is a film and what is a
study id; the app turns a :class:`RequestError` into its HTTP status.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path
from typing import Iterable

from monaifrac.io import InputError, read_radiograph

# tempfile.NamedTemporaryFile names: "tmp" + 8 characters of tempfile's alphabet, then the suffix
_UPLOAD_NAME = re.compile(r"tmp[a-z0-9_]{8}(\.[A-Za-z0-9]+)+")


class RequestError(ValueError):
    """A request the server refuses; ``status`` is the HTTP code (404 or 422)."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def is_upload(path: str, temp_dir: str | os.PathLike | None = None) -> bool:
    """True if ``path`` is where MONAI Label's infer endpoint stores an uploaded file.

    The endpoint writes uploads to ``tempfile.NamedTemporaryFile(suffix=...).name``; anything
    else on disk is not an upload, whatever the client says.
    """
    p = Path(path)
    return (p.is_absolute() and p.parent == Path(temp_dir or tempfile.gettempdir())
            and _UPLOAD_NAME.fullmatch(p.name) is not None)


def check_film(path: str | os.PathLike, name: str | None = None) -> None:
    """Raise :class:`RequestError` (422) unless ``path`` holds a whole, readable film.

    ``name`` is what the message calls the file (the client's id, not a temporary path). A
    truncated file is refused here, though ``monaifrac prepare`` reads one with a warning: a
    server should not label half a film without anyone seeing the warning.
    """
    shown = name or Path(path).name
    try:
        _array, info = read_radiograph(path)
    except InputError as err:
        problem = str(err).split(": ", 1)[-1]
        raise RequestError(422, f"{shown}: {problem}") from None
    if info.truncated:
        raise RequestError(422, f"{shown}: truncated file (its last bytes are missing)")


def resolve_study(image_id: str, studies: Iterable[str]) -> str:
    """Check that ``image_id`` names an image of the studies folder, and return it.

    ``studies`` are the datastore's ids. An id that is a path (``../x``, ``/etc/hosts``,
    ``a/b``) gets 422 and an unknown id 404; neither touches the disk.
    """
    if not image_id or image_id in {".", ".."} or "/" in image_id or "\\" in image_id or "\0" in image_id:
        raise RequestError(422, f"image id {image_id!r}: not a name of the studies folder (no paths allowed)")
    if image_id not in set(studies):
        raise RequestError(404, f"image id {image_id!r}: no such image in the studies folder")
    return image_id
