"""The one home of what monaifrac reads or writes inside other libraries, past their public API.

Each private attribute, method or class of ignite, MONAI, MONAI Label or PyTorch that the package
relies on is touched in exactly one function here, whose docstring names the version it was
checked against; the rest of the package calls these functions. ``tests/unit/test_compat.py``
(and, for MONAI Label, which lives in its own environment, ``tests/integration/test_compat_monailabel.py``)
checks each one against the installed library, so an upgrade that moves an internal fails there,
by name, instead of somewhere deep in a resumed training run.

* :mod:`monaifrac.compat.ignite`: a ``Checkpoint``'s list of kept files, the file name it writes.
* :mod:`monaifrac.compat.monai`: ``CheckpointSaver``'s three ignite checkpoints, ``EarlyStopHandler``'s
  ignite ``EarlyStopping``, the parts of ``MBConvBlock`` a Lite block reuses.
* :mod:`monaifrac.compat.pytorch`: a learning-rate scheduler's last rates, DDP's autograd hooks, the
  batch-norm base classes.
* :mod:`monaifrac.compat.monailabel`: the local bookkeeping of MONAI Label's datastores (imported in
  MONAI Label's environment only; this package's ``__init__`` does not import it).

Nothing here imports monaifrac: it sits below every other module.
"""
