"""The ``monaifrac`` command answers ``--help``, a bad option or a missing input without loading torch or MONAI.

Each case runs ``python -m monaifrac`` in a fresh interpreter (through a small wrapper that then
prints which heavy packages ``sys.modules`` holds): in this pytest process torch is long loaded.
No timing is asserted here; the wrapper's module list is what makes the command fast.
"""

from __future__ import annotations

import json
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "monai", "numpy", "ignite", "onnxruntime", "pydicom")
# runs `monaifrac ARGS` as `python -m monaifrac` does, then prints the exit status and the heavy modules loaded
WRAPPER = f"""
import json, runpy, sys
sys.argv = ["monaifrac", *sys.argv[1:]]
try:
    runpy.run_module("monaifrac", run_name="__main__", alter_sys=True)
    code = 0
except SystemExit as exit:
    code = exit.code
sys.stdout.flush()
print("\\n" + json.dumps({{"exit": code, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""
# every sub-command's --help in one interpreter
ALL_HELP = f"""
import contextlib, importlib, io, json, sys
from monaifrac.cli import COMMAND_MODULES, main
names = [name for module in COMMAND_MODULES for name in importlib.import_module(module).COMMANDS]
codes = {{}}
for name in names:
    with contextlib.redirect_stdout(io.StringIO()) as out:
        try:
            main([name, "--help"])
        except SystemExit as exit:
            codes[name] = (exit.code, "usage: monaifrac " + name in out.getvalue())
print(json.dumps({{"codes": codes, "loaded": [m for m in {HEAVY!r} if m in sys.modules]}}))
"""


def monaifrac(*args: str) -> tuple[subprocess.CompletedProcess, dict]:
    proc = subprocess.run([sys.executable, "-c", WRAPPER, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=120)
    *printed, last = proc.stdout.rstrip("\n").split("\n")
    result = json.loads(last)
    proc.stdout = "\n".join(printed)
    return proc, result


def one_error_line(proc: subprocess.CompletedProcess, command: str) -> str:
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"monaifrac {command}: error: "), proc.stderr
    return lines[0]


def test_help_loads_no_torch_and_no_monai():
    proc, result = monaifrac("--help")
    assert result == {"exit": 0, "loaded": []}, proc.stderr
    for name in ("prepare", "train", "infer", "cv", "score", "pacs-push", "benchmark"):
        assert f"\n    {name}" in proc.stdout
    assert proc.stderr == ""


def test_every_command_help_loads_no_torch_and_no_monai():
    proc = subprocess.run([sys.executable, "-c", ALL_HELP], cwd=REPO, capture_output=True, text=True, timeout=120)
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == [], proc.stderr
    assert len(result["codes"]) >= 16 and all(v == [0, True] for v in result["codes"].values()), result["codes"]


def test_infer_help_lists_its_options():
    proc, result = monaifrac("infer", "--help")
    assert result == {"exit": 0, "loaded": []}
    for option in ("--output-dir", "--models", "--engine", "--network", "--sliding-window", "--set"):
        assert option in proc.stdout


def test_missing_input_is_one_line_before_anything_loads(tmp_path):
    missing, out = tmp_path / "nonexistent", tmp_path / "out"
    proc, result = monaifrac("infer", str(missing), "--output-dir", str(out))
    assert result == {"exit": 2, "loaded": []}
    assert one_error_line(proc, "infer") == f"monaifrac infer: error: {missing}: no such file or folder"
    assert proc.stdout == "" and not out.exists()  # no config parsed: no logging line, no output folder


def test_bad_option_is_answered_by_the_parser_alone():
    proc, result = monaifrac("infer", "film.jpg", "--output-dir", "o", "--engine", "tensorrt")
    assert result == {"exit": 2, "loaded": []}
    assert "argument --engine: invalid choice: 'tensorrt'" in proc.stderr


@pytest.mark.parametrize("args, names", [
    (("train", "{d}"), "{d}/datalist.json: not found; run `monaifrac prepare FRACATLAS_DIR --out {d}` first"),
    (("cv", "{d}", "--out", "{t}/cv"), "{d}/datalist.json: not found"),
    (("evaluate", "{t}", "--model", "{t}/none.pt"), "no model file at {t}/none.pt"),
    (("infer", "{t}", "--output-dir", "{t}/o", "--models", "{t}", "{t}/b.pt"), "no model file at {t}"),
    (("average", "{t}/a.pt", "--out", "{t}/m.pt"), "{t}/a.pt: checkpoint not found"),
    (("score", "{d}", "--truth", "{t}", "--out", "{t}/s"), "{d}: no such file or folder"),
    (("check", "{d}"), "{d}/datalist.json: not found"),
])
def test_paths_named_on_the_command_line_are_checked_first(args, names, tmp_path):
    """Bundle and stage commands alike: exit 2, one line naming the path, before torch or MONAI loads."""
    (tmp_path / "datalist.json").write_text("{}")  # tmp_path passes for a prepared folder; {d} is absent
    fill = {"d": str(tmp_path / "nowhere"), "t": str(tmp_path)}
    proc, result = monaifrac(*(a.format(**fill) for a in args))
    assert result == {"exit": 2, "loaded": []}, proc.stderr
    assert names.format(**fill) in one_error_line(proc, args[0])


def test_benchmark_forwards_its_arguments_or_says_it_is_missing():
    import importlib.util

    proc, result = monaifrac("benchmark", "--help")
    if importlib.util.find_spec("monaifrac.benchmark") is None:
        assert result["exit"] == 1
        assert one_error_line(proc, "benchmark") == \
            "monaifrac benchmark: error: not part of this installation (no module monaifrac.benchmark.cli)"
    else:  # its own parser answered, named as the verb of monaifrac
        assert result["exit"] == 0 and "usage: monaifrac benchmark" in proc.stdout, proc.stderr


def test_spelled_out_choices_match_the_modules_they_stand_for():
    from monaifrac.bundle import ENGINES
    from monaifrac.dicom import commands, web
    from monaifrac.networks import onnx

    assert ENGINES == onnx.ENGINES
    assert commands.DEFAULT_TIMEOUT == web.DEFAULT_TIMEOUT


def test_own_configs_run_without_the_trust_warning_others_keep_it(tmp_path):
    """MONAI warns on every parse of a config; run_bundle leaves that out for the package's own configs only."""
    from monaifrac.bundle import _own_configs, config_path, run_bundle

    films, missing = tmp_path / "films", tmp_path / "none.pt"
    films.mkdir()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit):  # require_model stops it in `initialize`, after the parse
            run_bundle(["inference"], bundle_root=tmp_path, input_dir=str(films), model_file=str(missing))
    assert not [w for w in caught if "parsing config_file" in str(w.message)]

    # the same parse through MONAI's own entry point does warn (so the check above can fail)
    from monai.bundle import create_workflow

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with pytest.raises(SystemExit):
            create_workflow(config_file=[config_path("inference")], bundle_root=str(tmp_path),
                            input_dir=str(films), model_file=str(missing))
    assert [w for w in caught if "parsing config_file" in str(w.message)]

    # a copy elsewhere (a configs/ folder in the working directory) is not ours: it keeps the warning
    copy = tmp_path / "configs" / "inference.json"
    copy.parent.mkdir()
    copy.write_text(Path(config_path("inference")).read_text())
    assert _own_configs([config_path("inference"), config_path("sliding_window")])
    assert not _own_configs([config_path("inference"), str(copy)])
