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
