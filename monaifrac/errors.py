"""The error a user sees for a file that cannot be used: one line naming the file and the problem.

Its own module, below every reader, so that any of them can raise it:
every module of :mod:`monaifrac.io` (films, label maps, the DICOM check) and the stages
that check their own inputs. ``monaifrac.io.InputError`` is the same class.
"""

from __future__ import annotations

import os


class InputError(ValueError):
    """A file that cannot be used, with the file's path and the problem in plain words."""

    def __init__(self, path: os.PathLike | str, problem: str):
        self.path = str(path)
        # one line: libraries' messages (nibabel's "... \n - could the file be damaged?") may have several
        self.problem = " ".join(line.strip() for line in str(problem).strip().splitlines() if line.strip())
        super().__init__(f"{self.path}: {self.problem}")


# The checks a command runs on the paths its command line names, before it imports its stage
# (torch, MONAI: seconds), so that a mistyped path answers at once.

def require_exists(path: os.PathLike | str) -> None:
    """Raise InputError when ``path`` (a file or a folder) does not exist."""
    if not os.path.exists(path):
        raise InputError(path, "no such file or folder")


def require_prepared(folder: os.PathLike | str) -> None:
    """Raise InputError, naming ``folder/datalist.json``, when ``folder`` is not one ``monaifrac prepare`` wrote."""
    datalist = os.path.join(folder, "datalist.json")
    if not os.path.isfile(datalist):
        raise InputError(datalist, f"not found; run `monaifrac prepare FRACATLAS_DIR --out {folder}` first")
