#!/usr/bin/env bash
# Rerun the shipped model's recipe end to end: prepare the FracAtlas copy, train (official split),
# evaluate the best checkpoint on the official valid films, score them and write the report.
# On a CUDA GPU training uses AMP (train.json's "amp"); on a CPU with bf16 units, bf16 autocast.
#
#   bash scripts/train_shipped.sh [FRACATLAS_DIR] [RUN_DIR]
#   EPOCHS=30 WORKERS=8 bash scripts/train_shipped.sh ../shared/data/fracatlas runs/shipped
#
# The weights land in RUN_DIR/bundle/models/model.pt; copy that file to bundle/models/model.pt to ship it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
FRACATLAS=${1:-${MONAIFRAC_FRACATLAS:-../shared/data/fracatlas}}
RUN=${2:-runs/shipped}
EPOCHS=${EPOCHS:-30}
WORKERS=${WORKERS:-2}
INIT=${INIT_FROM:-}

echo "== prepare $FRACATLAS -> $RUN/prepared"
[ -f "$RUN/prepared/datalist.json" ] || monaifrac prepare "$FRACATLAS" --out "$RUN/prepared" --quiet

echo "== train $EPOCHS epochs -> $RUN/bundle (TensorBoard: tensorboard --logdir $RUN/bundle/eval)"
RESUME=$(ls -t "$RUN"/bundle/models/checkpoint_epoch=*.pt 2>/dev/null | head -1 || true)
EXTRA=()
if [ -n "$RESUME" ]; then
    echo "   resuming from $RESUME"; EXTRA=(resume_from="$RESUME")
elif [ -n "$INIT" ]; then
    echo "   warm start from $INIT"; EXTRA=(init_from="$INIT")
fi
monaifrac train "$RUN/prepared" --bundle-root "$RUN/bundle" --epochs "$EPOCHS" \
    --set num_workers="$WORKERS" "${EXTRA[@]}"

echo "== evaluate the best checkpoint on the official valid split"
monaifrac evaluate "$RUN/prepared" --bundle-root "$RUN/bundle" --set num_workers="$WORKERS"

echo "== label the valid films, score them against the polygons, write the report"
VALID=$(python - "$FRACATLAS" "$RUN/prepared" <<'PY'
import json, sys
from pathlib import Path
src, prepared = Path(sys.argv[1]), Path(sys.argv[2])
ids = {d["id"] for d in json.loads((prepared / "datalist.json").read_text())["validation"]}
print(" ".join(str(p) for p in sorted((src / "images").rglob("*.jpg")) if p.stem in ids))
PY
)
rm -rf "$RUN/valid"
monaifrac infer $VALID --bundle-root "$RUN/bundle" --output-dir "$RUN/valid" 2>&1 | grep -E "error|Error" || true
monaifrac score "$RUN/valid" --truth "$FRACATLAS" --out "$RUN/valid-score"
monaifrac report "$RUN/valid-score" --out "$RUN/valid-report.html"
echo "weights: $RUN/bundle/models/model.pt   figures: $RUN/bundle/eval/metrics.json, $RUN/valid-score/metrics.json"
echo "report:  $RUN/valid-report.html"
