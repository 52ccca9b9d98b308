"""`monaifrac average --bn-data`: the averaged network's batch-norm statistics re-estimated on the training
films through the bundle (configs/update_bn.json over train.json), the weights untouched."""

from __future__ import annotations

import sys

import torch

from tests.integration.conftest import check_rc, run_cmd


def test_average_with_bn_data_re_estimates_only_the_batch_norm_statistics(trained, tmp_path):
    model = trained.bundle_root / "models" / "model.pt"
    out = tmp_path / "swa_bn.pt"
    log = check_rc(run_cmd([sys.executable, "-m", "monaifrac", "average", str(model), str(model), "--out", str(out),
                            "--bn-data", str(trained.prepared.dataset_dir), "--bundle-root", str(tmp_path),
                            "--set", "num_workers=0", "batch_size=2", "film_max_side=192", "film_long_side=192"]))
    assert "batch norm re-estimated" in log and f"wrote {out}" in log, log[-3000:]
    before = torch.load(model, weights_only=True)
    after = torch.load(out, weights_only=True)
    assert set(after) == set(before)
    stats = [k for k in before if k.endswith(("running_mean", "running_var"))]
    assert len(stats) > 50  # the encoder's and the decoder's batch-norm layers
    changed = [k for k in stats if not torch.allclose(after[k], before[k], rtol=1e-4, atol=1e-6)]
    assert len(changed) > len(stats) // 2, f"only {len(changed)} of {len(stats)} statistics changed"
    assert all(torch.isfinite(after[k]).all() for k in stats)
    assert all((after[k] >= 0).all() for k in stats if k.endswith("running_var"))
    for k, v in before.items():
        if k not in stats and not k.endswith("num_batches_tracked"):
            assert torch.equal(after[k], v), k  # the mean of two equal networks is that network
