#!/usr/bin/env bash
# Supervised versus adversarial fine-tuning of the same weights: same network, data, epochs,
# learning rate and seed; each arm's best checkpoint (by pooled valid fracture Dice, as for the
# shipped model) is evaluated on the official valid split and the two rows are printed.
#
#   bash scripts/compare_gan.sh PREPARED_DIR [RUN_DIR]
#   EPOCHS=2 LR=2e-4 INIT_FROM=bundle/models/model.pt WORKERS=2 bash scripts/compare_gan.sh data/fa runs/gan-vs-sup
#
# An arm whose RUN_DIR/<arm>/eval/metrics.json exists is not run again (delete it to redo).
# Set INIT_FROM= (empty) to compare training from scratch instead of fine-tuning.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
DATA=${1:?usage: compare_gan.sh PREPARED_DIR [RUN_DIR]}
RUN=${2:-runs/gan-vs-supervised}
EPOCHS=${EPOCHS:-2}
LR=${LR:-2e-4}
INIT=${INIT_FROM-bundle/models/model.pt}
WORKERS=${WORKERS:-2}
SET=(num_workers="$WORKERS" learning_rate="$LR")
[ -n "$INIT" ] && SET+=(init_from="$INIT")

for arm in supervised gan; do
    root=$RUN/$arm
    if [ -f "$root/eval/metrics.json" ]; then echo "== $arm: done before ($root/eval/metrics.json)"; continue; fi
    mode=(); [ "$arm" = gan ] && mode=(--mode gan)
    echo "== $arm: $EPOCHS epochs from ${INIT:-scratch}, lr $LR -> $root"
    monaifrac train "$DATA" "${mode[@]}" --bundle-root "$root" --epochs "$EPOCHS" --set "${SET[@]}"
    monaifrac evaluate "$DATA" --bundle-root "$root" --set num_workers="$WORKERS"
done

python - "$RUN" "$EPOCHS" "$LR" "${INIT:-scratch}" <<'PY'
import json, sys
from pathlib import Path
run, epochs, lr, init = sys.argv[1:]
names = ["val_fracture_dice_pos", "val_fracture_dice", "val_fracture_iou", "val_fracture_hd95", "val_presence_auc"]
print(f"start {init}, {epochs} epochs, lr {lr}; official valid split")
print("arm          " + "  ".join(n.replace("val_", "") for n in names))
for arm in ("supervised", "gan"):
    m = json.loads((Path(run) / arm / "eval" / "metrics.json").read_text())["metrics"]
    print(f"{arm:<12} " + "  ".join(f"{m.get(n, float('nan')):>{len(n) - 4}.4f}" for n in names))
PY
