"""PyTorch-Ignite internals, each behind one function. Checked against pytorch-ignite 0.5.5."""

from __future__ import annotations

from typing import Sequence

from ignite.handlers import Checkpoint

CHECKED_AGAINST = "0.5.5"  # the version each function below was read against (tests/unit/test_compat.py)

# the key of Checkpoint.state_dict() holding the kept files: ignite names it after its private list
_SAVED_KEY = "_saved"


def kept_files(checkpoint: Checkpoint) -> list[tuple[float, str]]:
    """The files a ``Checkpoint`` keeps, as ``(priority, file name)`` pairs, worst first.

    Through the public ``Checkpoint.state_dict()``, whose one key ignite 0.5.5 names ``"_saved"``
    after the private list it copies.
    """
    return [(p, str(f)) for p, f in checkpoint.state_dict()[_SAVED_KEY]]


def set_kept_files(checkpoint: Checkpoint, items: Sequence[Sequence]) -> None:
    """Make a ``Checkpoint`` keep ``items`` (``(priority, file name)`` pairs, worst first), as if it had
    written them: it replaces or removes them as ``n_saved`` and the scores say.

    Through the public ``Checkpoint.load_state_dict({"_saved": ...})`` (ignite 0.5.5).
    """
    checkpoint.load_state_dict({_SAVED_KEY: [(p, str(f)) for p, f in items]})


def checkpoint_filename(checkpoint: Checkpoint, name: str, score) -> str:
    """The file name ``checkpoint`` gives the object ``name`` saved with ``score`` (no global step).

    ``Checkpoint._get_filename_pattern(None)`` (private in ignite 0.5.5) filled in as
    ``Checkpoint.__call__`` fills it.
    """
    return checkpoint._get_filename_pattern(None).format(
        filename_prefix=checkpoint.filename_prefix, ext=checkpoint.ext, name=name,
        score_name=checkpoint.score_name, score=str(score), global_step=None)
