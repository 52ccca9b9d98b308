#!/usr/bin/env bash
# Set up .venv and run the main job: prepare the data (the FracAtlas copy when present, else
# synthetic films), write previews, train a short run, evaluate it, infer on a few films, and
# say where everything is. About 5 minutes on 2 CPU cores.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
RUN=${RUN_DIR:-runs/demo}
FRACATLAS=$(python -c "from monaifrac.data.fracatlas import default_fracatlas_dir as d; print(d() or '')")
mkdir -p "$RUN"
if [ -n "${MONAIFRAC_FRACATLAS:-}" ] && { [ -z "$FRACATLAS" ] || [ "$(realpath -m "$FRACATLAS")" != "$(realpath -m "$MONAIFRAC_FRACATLAS")" ]; }; then
    echo "warning: MONAIFRAC_FRACATLAS=$MONAIFRAC_FRACATLAS is not a FracAtlas folder (images/ + dataset.csv)" >&2
fi
if [ -n "$FRACATLAS" ]; then
    echo "== data: FracAtlas copy at $FRACATLAS"
    SOURCE="$FRACATLAS"
else
    echo "== data: no FracAtlas copy found (set MONAIFRAC_FRACATLAS); using synthetic films"
    SOURCE="$RUN/synthetic"
    monaifrac synth "$SOURCE" --n 48 --seed 0 > /dev/null
fi

echo "== 1/5 prepare"
monaifrac prepare "$SOURCE" --out "$RUN/prepared" --quiet
monaifrac preview "$RUN/prepared" --n 6 > /dev/null
[ -n "$FRACATLAS" ] && monaifrac preview "$RUN/prepared" --ids IMG0002628 IMG0002588 > /dev/null

echo "== 2/5 train (a short run: 2 epochs on 48 films; the full run is 'monaifrac train $RUN/prepared')"
monaifrac train "$RUN/prepared" --bundle-root "$RUN/bundle" --epochs 2 \
    --set max_items=48 val_max_items=16 num_workers=2 2>&1 | grep -E "Metrics --|Saved|error|Error" || true
test -f "$RUN/bundle/models/model.pt"

echo "== 3/5 evaluate (validation part, 32 films)"
monaifrac evaluate "$RUN/prepared" --bundle-root "$RUN/bundle" --set eval_max_items=32 num_workers=2 2>&1 \
    | grep -E "Metrics --|error|Error" || true

echo "== 4/5 infer on a few films"
FILMS=$(python - "$SOURCE" <<'PY'
import sys
from pathlib import Path
root = Path(sys.argv[1]) / "images" / "Fractured"
wanted = ["IMG0002628", "IMG0002588"]
films = [root / f"{i}.jpg" for i in wanted if (root / f"{i}.jpg").exists()]
films += sorted(p for p in root.glob("*.jpg") if p not in films)[: 4 - len(films)]
print(" ".join(str(f) for f in films))
PY
)
monaifrac infer $FILMS --bundle-root "$RUN/bundle" --output-dir "$RUN/inference" 2>&1 | grep -E "error|Error" || true

echo "== 5/5 where things are"
echo "prepared data:      $RUN/prepared (datalist.json, prepare_report.json)"
echo "previews:           $RUN/prepared/previews/*.png"
echo "checkpoints:        $RUN/bundle/models (model.pt = best validation fracture Dice)"
echo "TensorBoard logs:   $RUN/bundle/eval   ->  .venv/bin/tensorboard --logdir $RUN/bundle/eval"
echo "evaluation:         $RUN/bundle/eval/metrics.json and *_raw.csv (per film)"
echo "masks and overlays: $RUN/inference/<film>.png (labels 0/1/2) and <film>_overlay.png"
echo "(a 2-epoch model on 48 films: its masks show the plumbing, not what a trained model finds)"
