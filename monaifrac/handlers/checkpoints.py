"""Writing and reading checkpoints: :class:`AtomicCheckpointSaver` (a new file replaces the old one
only once whole) and :class:`WeightsLoader` (a bad file stops the run before any engine starts).

The savers and loader that also carry the trainer and the run's bookkeeping, for resuming, are in
:mod:`monaifrac.handlers.run_state`.
"""

from __future__ import annotations

import re

from ignite.engine import Engine
from ignite.handlers import DiskSaver
from monai.handlers import CheckpointLoader, CheckpointSaver

from monaifrac.compat.monai import saver_checkpoints
from monaifrac.handlers.guards import TrainingDiverged


class _SaveFirstDiskSaver(DiskSaver):
    """Ignite's atomic ``DiskSaver`` (temporary file, then rename) that removes an old file only
    after the new one is complete, and never a fixed-name file, which the rename replaces.

    Ignite's ``Checkpoint`` removes the oldest file *before* writing the new one, so with
    ``n_saved=1`` (or a fixed ``model.pt``) a kill between the two left no checkpoint at all.
    """

    _TEMPORARY = re.compile(r"tmp[a-z0-9_]{8}")  # tempfile.NamedTemporaryFile(dir=...), as ignite writes

    def __init__(self, dirname, filename: str | None = None):
        super().__init__(dirname=dirname, require_empty=False, atomic=True)
        self.filename = filename
        self._pending: list[str] = []
        # a run killed during a save leaves ignite's temporary file (the real ones stay whole):
        # the next run in this folder (a resume) clears it
        for p in self.dirname.glob("tmp*"):
            if self._TEMPORARY.fullmatch(p.name) and p.is_file():
                p.unlink(missing_ok=True)

    def __call__(self, checkpoint, filename: str, metadata=None) -> None:
        super().__call__(checkpoint, self.filename or filename, metadata)
        pending, self._pending = self._pending, []
        for old in pending:
            if self.filename is None and old != filename and (self.dirname / old).exists():
                super().remove(old)

    def remove(self, filename: str) -> None:
        self._pending.append(filename)


class AtomicCheckpointSaver(CheckpointSaver):
    """MONAI's ``CheckpointSaver`` with atomic writes: the previous checkpoint stays loadable until
    the new one is whole.

    MONAI turns ignite's atomic saving off (it once lost group/others read permissions, which
    ignite now restores) and ignite deletes the old file before writing the new one, so a run
    killed during a save could leave a truncated ``model.pt``, or none. Here each file is written
    to a temporary file in the same folder and renamed over the old one, and older files are
    removed only afterwards (:class:`_SaveFirstDiskSaver`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for checkpoint in saver_checkpoints(self):
            old = checkpoint.save_handler
            checkpoint.save_handler = _SaveFirstDiskSaver(old.dirname, getattr(old, "filename", None))

    def exception_raised(self, engine: Engine, e: Exception) -> None:
        if isinstance(e, TrainingDiverged):
            raise e  # the state is not finite: keep the last good checkpoints, write no "final" one
        super().exception_raised(engine, e)


class WeightsLoader(CheckpointLoader):
    """MONAI's ``CheckpointLoader``, reading through :func:`monaifrac.checkpoints.read_checkpoint`.

    The file is checked when the handler is built, before any engine runs, so a missing,
    truncated, corrupt or code-carrying checkpoint stops a run with one line naming it
    (:class:`monaifrac.io.InputError`) and nothing is written over earlier checkpoints.
    Loading itself is weights-only, as in MONAI 1.6.
    """

    def __init__(self, load_path: str, load_dict: dict, **kwargs):
        from monaifrac.checkpoints import read_checkpoint

        saved = read_checkpoint(load_path)
        self.saved_keys = set(saved) if isinstance(saved, dict) else set()
        del saved
        super().__init__(load_path, load_dict, **kwargs)
