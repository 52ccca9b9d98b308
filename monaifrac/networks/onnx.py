"""ONNX Runtime as an inference engine: the bundle's network, run through an ONNX file exported from
its own weights and cached beside them.

:class:`OnnxRuntimeNetwork` wraps a PyTorch network and behaves like it where inference touches it
(``network(x)``, ``state_dict``/``load_state_dict``, ``eval``, ``to``), so MONAI's evaluator, every
monaifrac inferer, flip TTA and ensembles run unchanged on either engine. Its forward runs an ONNX
Runtime session on the CPU.

The ONNX file is made with the converter call of ``python -m monai.bundle onnx_export`` as the model
card gives it (:data:`CONVERTER_KWARGS`: dynamo exporter, one self-contained file, dynamic batch,
height and width) and named after a hash of the weights (``model.<16 hex>.onnx`` beside
``model.pt``): weights that change, e.g. a model MONAI Label has just retrained, get a new file at the
next forward, never a stale one.

Why an engine switch at all: on the 2-core CPU of this project's CI, ONNX Runtime runs the shipped
network faster than PyTorch eager (``monaifrac benchmark infer --engines`` prints both, side by side).

``onnxruntime-int8`` runs ``<stem>.<hash>.int8.onnx`` instead: the same network statically quantized
(``monaifrac quantize``, :mod:`monaifrac.networks.quantize`). It is never made on the fly, since its
activation ranges come from calibration films a user serving the bundle may not have; where it is
missing the engine says how to make it.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import threading
import warnings
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

ENGINES = ("torch", "onnxruntime", "onnxruntime-int8")
#: the int8 file's name ends so, after ``<stem>.<hash>`` (``monaifrac.networks.quantize`` writes it)
INT8_SUFFIX = ".int8.onnx"

#: ``monai.networks.convert_to_onnx`` arguments of the model card's ``onnx_export`` command.
CONVERTER_KWARGS = {
    "input_names": ["image"],
    "output_names": ["pred"],
    "dynamo": True,
    "external_data": False,
    "dynamic_axes": {"image": {0: "batch", 2: "height", 3: "width"}, "pred": {0: "batch", 2: "height", 3: "width"}},
}
#: the example input the exporter traces with (any multiple of 32 works afterwards: the axes are dynamic)
EXPORT_SHAPE = (1, 1, 256, 256)


class EngineError(RuntimeError):
    """The ONNX Runtime engine cannot run: a missing package or a failed export."""


def weights_hash(network: torch.nn.Module) -> str:
    """First 16 hex digits of the SHA-256 of ``network``'s state dict (names, dtypes, shapes, values)."""
    digest = hashlib.sha256()
    for name, value in network.state_dict().items():
        value = value.detach().cpu().contiguous()
        digest.update(f"{name}:{value.dtype}:{tuple(value.shape)};".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    return digest.hexdigest()[:16]


def user_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/monaifrac/onnx`` (default ``~/.cache/monaifrac/onnx``)."""
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "monaifrac" / "onnx"


def export_onnx(network: torch.nn.Module, path: str | os.PathLike) -> Path:
    """Write ``network`` (its current weights) to ``path`` as ONNX, atomically.

    A float32 CPU copy in eval mode is exported, so the caller's network is left as it was. The file
    appears complete or not at all: another process serving the same weights either finds it or
    exports its own copy, never reads half a file.
    """
    import copy

    try:
        import onnx  # noqa: F401  (the converter's saver; onnxscript is the dynamo exporter's)
        import onnxscript  # noqa: F401
    except ImportError as err:
        raise EngineError(f"engine onnxruntime needs the ONNX exporter ({err.name} is missing): "
                          "pip install onnx onnxscript onnxruntime") from None
    from monai.networks.utils import convert_to_onnx

    path = Path(path)
    net = copy.deepcopy(network).to("cpu", torch.float32).eval()
    net = net.to(memory_format=torch.contiguous_format)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".onnx.part", dir=path.parent)
    os.close(fd)
    try:
        # the exporter prints its progress and warns about its own API: a user of `infer` sees neither
        chatter = io.StringIO()
        quiet = [logging.getLogger(name) for name in ("onnx_ir", "onnxscript", "torch.onnx")]
        levels = [log.level for log in quiet]
        try:
            for log in quiet:  # onnx_ir logs each initializer it deduplicates, torch.onnx each op it skips
                log.setLevel(logging.ERROR)
            with torch.no_grad(), warnings.catch_warnings(), contextlib.redirect_stdout(chatter):
                warnings.simplefilter("ignore")
                model = convert_to_onnx(net, inputs=[torch.rand(EXPORT_SHAPE)], use_trace=True, **CONVERTER_KWARGS)
        finally:
            for log, level in zip(quiet, levels):
                log.setLevel(level)
        logger.debug("ONNX exporter output:\n%s", chatter.getvalue())
        import onnx

        onnx.save(model, tmp)
        os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide the file from other users of a shared bundle
        os.replace(tmp, path)
    except Exception as err:
        raise EngineError(f"ONNX export of the network to {path} failed: {type(err).__name__}: {err}") from err
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path


class OnnxRuntimeNetwork(torch.nn.Module):
    """``network`` run by ONNX Runtime (CPU execution provider), its ONNX file cached by weights.

    Args:
        network: the PyTorch network (``inference.json``'s ``network_def``); it holds the weights,
            and its ``state_dict``/``load_state_dict`` are this module's, with the same keys, so a
            checkpoint loads into either.
        cache_dir: where ``<name>.<hash>.onnx`` is kept: beside the weights file. Where that folder
            cannot be written (a bundle installed read-only), :func:`user_cache_dir` is used.
        name: the file name's stem (the weights file's stem, ``model``).
        threads: ONNX Runtime intra-op threads; default ``torch.get_num_threads()``, as PyTorch would use.
        int8: run the weights' int8 file (``<name>.<hash>.int8.onnx``, made by ``monaifrac quantize``)
            instead of the float32 export; it is looked for, never made here.

    ``forward(x)``: x (B, 1, H, W) float on any device → (B, K, H, W) float32 on x's device, what
    ``network(x)`` returns (a MetaTensor input gives a plain tensor: the inferers restore metadata).
    The session is made at the first forward after construction or ``load_state_dict``; weights
    changed in place without ``load_state_dict`` are not seen.
    """

    def __init__(self, network: torch.nn.Module, cache_dir: str | os.PathLike | None = None, name: str = "model",
                 threads: int | None = None, int8: bool = False):
        super().__init__()
        self.network = network
        self.int8 = int8
        self.cache_dir = Path(cache_dir) if cache_dir is not None else user_cache_dir()
        self.name = name
        self.threads = threads
        self.onnx_file: Path | None = None
        self._session = None
        self._lock = threading.Lock()

    # the weights are the wrapped network's, under its own keys
    def state_dict(self, *args, **kwargs):
        return self.network.state_dict(*args, **kwargs)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        result = self.network.load_state_dict(state_dict, strict=strict, assign=assign)
        self._session = None
        return result

    def __deepcopy__(self, memo):
        import copy

        return OnnxRuntimeNetwork(copy.deepcopy(self.network, memo), self.cache_dir, self.name, self.threads, self.int8)

    def _writable_dir(self) -> Path:
        for folder in (self.cache_dir, user_cache_dir()):
            try:
                folder.mkdir(parents=True, exist_ok=True)
                probe = tempfile.NamedTemporaryFile(dir=folder, prefix=".write-probe.")
                probe.close()
                return folder
            except OSError:
                logger.warning("cannot write the ONNX cache in %s; trying the next place", folder)
        raise EngineError(f"no writable folder for the ONNX file: {self.cache_dir}, {user_cache_dir()}")

    def onnx_path(self) -> Path:
        """The ONNX file of the current weights, exported if it is not there yet (the int8 file: found, or
        an :class:`EngineError` saying how to make it)."""
        key = weights_hash(self.network)
        if self.int8:
            for folder in dict.fromkeys((self.cache_dir, user_cache_dir())):
                candidate = folder / f"{self.name}.{key}{INT8_SUFFIX}"
                if candidate.is_file():
                    return candidate
            raise EngineError(f"engine onnxruntime-int8: no {self.name}.{key}{INT8_SUFFIX} in {self.cache_dir} for "
                              f"these weights; make it with `monaifrac quantize PREPARED_DIR --model "
                              f"{self.cache_dir / self.name}.pt` (calibrated on the training films of a "
                              "`monaifrac prepare` folder), or use --engine onnxruntime")
        for folder in dict.fromkeys((self.cache_dir, user_cache_dir())):
            candidate = folder / f"{self.name}.{key}.onnx"
            if candidate.is_file():
                return candidate
        folder = self._writable_dir()
        path = folder / f"{self.name}.{key}.onnx"
        logger.info("exporting the network to %s (ONNX, once for these weights)", path)
        export_onnx(self.network, path)
        for old in folder.glob(f"{self.name}.*.onnx"):  # earlier weights' files: never served again
            if old != path and len(old.suffixes) == 2 and len(old.suffixes[0]) == 17:
                old.unlink(missing_ok=True)
        return path

    def session(self):
        with self._lock:
            if self._session is None:
                try:
                    import onnxruntime as ort
                except ImportError:
                    raise EngineError("engine onnxruntime needs onnxruntime: pip install onnxruntime") from None
                self.onnx_file = self.onnx_path()
                options = ort.SessionOptions()
                options.intra_op_num_threads = self.threads or torch.get_num_threads()
                options.inter_op_num_threads = 1
                options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
                options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
                options.log_severity_level = 3  # warnings about unused initializers are noise to a user
                # ORT's idle threads spin after each run by default, taking the cores from the PyTorch
                # post-processing that follows (its transforms ran 3-4x slower beside them)
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._session = ort.InferenceSession(str(self.onnx_file), options,
                                                     providers=["CPUExecutionProvider"])
            return self._session

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        import numpy as np

        session = self.session()
        data = x.as_tensor() if hasattr(x, "as_tensor") else x
        arr = np.ascontiguousarray(data.detach().to("cpu", torch.float32).numpy())
        out = session.run(None, {"image": arr})[0]
        return torch.from_numpy(out).to(x.device)


def with_engine(network: torch.nn.Module, engine: str, model_file: str | os.PathLike | None = None):
    """``network`` as ``engine`` runs it: itself for ``"torch"``, an :class:`OnnxRuntimeNetwork`
    caching its ONNX file beside ``model_file`` for ``"onnxruntime"``, one running the int8 file beside
    ``model_file`` for ``"onnxruntime-int8"``."""
    engine = str(engine).strip().lower()
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {', '.join(ENGINES)}, got {engine!r}")
    if engine == "torch":
        return network
    int8 = engine == "onnxruntime-int8"
    if model_file is None:
        return OnnxRuntimeNetwork(network, int8=int8)
    model_file = Path(model_file)
    return OnnxRuntimeNetwork(network, cache_dir=model_file.parent, name=model_file.stem, int8=int8)


def ready(networks, model_file: str | os.PathLike | None = None) -> None:
    """Find (int8) or export (float32) the ONNX files of ``networks`` (the bundle's network, then its
    ensemble members) now, before any film is read.

    A missing int8 file or a failed export then stops a run with its :class:`EngineError` before the
    first film, not from inside the evaluator. ``model_file``: the first network's weights, loaded into
    it first (the bundle's checkpoint loader loads them only when the run starts; the members come
    loaded). PyTorch networks pass through.
    """
    from monaifrac.checkpoints import model_state, read_checkpoint

    for i, net in enumerate(networks):
        if not isinstance(net, OnnxRuntimeNetwork):
            continue
        if i == 0 and model_file is not None:
            net.load_state_dict(model_state(read_checkpoint(model_file), model_file))
        # the file, not a session: the checkpoint loader loads the weights again at the run's start,
        # which drops any session made here
        net.onnx_path()


def with_engines(networks, engine: str, model_files=()) -> list:
    """:func:`with_engine` over several networks (an ensemble's members) and their weights files."""
    files = list(model_files or [])
    return [with_engine(net, engine, files[i] if i < len(files) else None) for i, net in enumerate(networks)]
