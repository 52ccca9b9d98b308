#!/usr/bin/env bash
# Rerun the shipped model's recipe end to end: prepare the FracAtlas copy, train its three steps on
# the official split, evaluate the result on the official valid films, score them and write the report.
# On a CUDA GPU training uses AMP (train.json's "amp"); on a CPU with bf16 units, bf16 autocast.
#
#   bash scripts/train_shipped.sh [FRACATLAS_DIR] [RUN_DIR]
#   WORKERS=8 bash scripts/train_shipped.sh ../shared/data/fracatlas runs/shipped
#
# The steps (bundle/docs/README.md, "The shipped model"); each keeps its best epoch by pooled valid
# fracture Dice and the next one starts from those weights:
#   1. supervised from scratch, 256² patches, lr 1e-3 on a STEP1_EPOCHS cosine (default 30)
#   2. adversarial fine-tuning (--mode gan), lr 2e-4, STEP2_EPOCHS (default 2)
#   3. supervised fine-tuning on 384² patches, 2 per film, lr 5e-4 on a STEP3_EPOCHS cosine (default 16)
# An interrupted step resumes exactly from its last checkpoint_epoch=N.pt when the script is run
# again; a finished step (checkpoint_final.pt) is not run again. INIT_FROM=weights.pt starts step 1
# from those weights instead of from scratch.
# Step 3's best epoch by the key metric lands in RUN_DIR/step3/models/model.pt (what is evaluated below);
# the end of its schedule, which is what bundle/models/model.pt holds (model card, "The shipped model"),
# is the "model" entry of RUN_DIR/step3/models/checkpoint_final.pt.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
FRACATLAS=${1:-${MONAIFRAC_FRACATLAS:-../shared/data/fracatlas}}
RUN=${2:-runs/shipped}
WORKERS=${WORKERS:-2}

echo "== prepare $FRACATLAS -> $RUN/prepared"
[ -f "$RUN/prepared/datalist.json" ] || monaifrac prepare "$FRACATLAS" --out "$RUN/prepared" --quiet

# step NAME EPOCHS INIT MODE [ID=VALUE ...]: one `monaifrac train` of the recipe
step() {
    local name=$1 epochs=$2 init=$3 mode=$4; shift 4
    local root=$RUN/$name sets=(num_workers="$WORKERS" "$@") resume
    if [ -f "$root/models/checkpoint_final.pt" ]; then echo "== $name: finished before ($root)"; return; fi
    resume=$(ls -t "$root"/models/checkpoint_epoch=*.pt 2>/dev/null | head -1 || true)
    if [ -n "$resume" ]; then sets+=(resume_from="$resume"); echo "== $name: resuming from $resume"
    elif [ -n "$init" ]; then sets+=(init_from="$init"); echo "== $name: $epochs epochs ($mode) from $init"
    else echo "== $name: $epochs epochs ($mode) from scratch"; fi
    echo "   TensorBoard: tensorboard --logdir $root/eval"
    monaifrac train "$RUN/prepared" --mode "$mode" --bundle-root "$root" --epochs "$epochs" --set "${sets[@]}"
}
step step1 "${STEP1_EPOCHS:-30}" "${INIT_FROM:-}" supervised
step step2 "${STEP2_EPOCHS:-2}" "$RUN/step1/models/model.pt" gan learning_rate=2e-4
step step3 "${STEP3_EPOCHS:-16}" "$RUN/step2/models/model.pt" supervised \
    learning_rate=5e-4 "patch_size=[384,384]" num_samples=2

echo "== evaluate step 3's best weights on the official valid split"
monaifrac evaluate "$RUN/prepared" --bundle-root "$RUN/step3" --set num_workers="$WORKERS"

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
monaifrac infer $VALID --bundle-root "$RUN/step3" --output-dir "$RUN/valid" 2>&1 | grep -E "error|Error" || true
monaifrac score "$RUN/valid" --truth "$FRACATLAS" --out "$RUN/valid-score"
monaifrac report "$RUN/valid-score" --out "$RUN/valid-report.html"
echo "weights: $RUN/step3/models/model.pt   figures: $RUN/step3/eval/metrics.json, $RUN/valid-score/metrics.json"
echo "report:  $RUN/valid-report.html"
