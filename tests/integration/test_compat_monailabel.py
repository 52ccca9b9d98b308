"""monaifrac.compat.monailabel against the installed MONAI Label 0.8.5, in its own environment
(``scripts/monailabel-env.sh``, built once per machine), as the server runs it."""

from __future__ import annotations

import os

import pytest

from tests.integration.conftest import REPO, check_rc, run_cmd

pytestmark = pytest.mark.slow


def test_monailabel_internals_are_where_compat_reaches_for_them():
    env_dir = check_rc(run_cmd(["bash", "scripts/monailabel-env.sh"], timeout=1800)).strip().splitlines()[-1]
    env = {"PYTHONPATH": str(REPO)}
    out = check_rc(run_cmd([os.path.join(env_dir, "bin", "python"), "tests/integration/monailabel_compat_checks.py"],
                           timeout=900, env=env))
    assert out.strip().splitlines()[-1] == "ok", out[-3000:]
