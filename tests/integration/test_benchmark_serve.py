"""Smoke test of ``monaifrac benchmark serve``: the MONAI Label server under load, a handful of requests.

One run of the benchmark with ``--quick --synthetic`` (synthetic films, so it needs no real data): it
starts the server once, sends 8 uploads at each of 1, 4 and 8 clients, one 2304 x 2880 scan and a
60-request soak with one bad request of each of the 6 kinds. The figures are not judged (a shared
CI runner), only that every answer was right and everything the README quotes is in the JSON.
"""

from __future__ import annotations

import json
import sys

import pytest

from tests.integration.conftest import check_rc, run_cmd

pytestmark = pytest.mark.slow


def test_benchmark_serve_quick_answers_every_request_and_reports_the_figures(tmp_path):
    check_rc(run_cmd(["bash", "scripts/monailabel-env.sh"], timeout=1800))  # built once per machine
    out = tmp_path / "bench.json"
    stdout = check_rc(run_cmd([sys.executable, "-m", "monaifrac.benchmark", "serve", "--quick", "--synthetic",
                               "--json", str(out)], timeout=900))
    report = json.loads(out.read_text())
    assert report["benchmark"] == "serve" and report["machine"]["cpu"] and "commit" in report
    result = report["results"]
    assert "goal p50 (1 client, 373x454)" in stdout and "goal RSS growth" in stdout
    assert report["tables"][0]["title"] in stdout  # the table printed is the one in the JSON

    levels = {(lv["film"], lv["clients"]): lv for lv in result["levels"]}
    assert set(levels) == {("373x454", 1), ("373x454", 4), ("373x454", 8), ("2304x2880", 1)}
    for lv in levels.values():
        assert lv["requests"] >= 1
        assert lv["errors"] == 0 and lv["wrong_labels"] == 0, lv
        assert 0 < lv["p50_s"] <= lv["p95_s"]
        assert lv["films_per_s"] > 0 and lv["model_only_s"] > 0
        assert lv["server"]["lines"] == lv["requests"]  # MONAI Label logged each request's stages
    assert result["no_answer"] == 0

    soak = result["soak"]
    assert soak["answered"] == soak["requests"] == 60
    assert soak["good"] == soak["good_200"] == soak["good_correct"] == 54
    assert soak["bad"] == soak["bad_4xx"] == soak["bad_expected_code"] == 6
    assert soak["rss_at_from_mb"] > 0 and soak["rss_end_mb"] > 0
    assert isinstance(soak["rss_growth_mb"], float)
    assert soak["temp_files_left"] == []
    assert {"p50_one_client", "throughput", "no_error_at_top", "soak_rss", "soak_temp_files"} <= set(result["goals"])
