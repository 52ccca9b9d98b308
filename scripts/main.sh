#!/usr/bin/env bash
# Set up .venv and run the main job: prepare the data (the FracAtlas copy when present, else
# synthetic films), write previews, train a short demonstration run, evaluate it, infer on a few
# films; then label the validation films with the shipped model, score them against the
# polygons and write the HTML report. About 6 minutes on 2 CPU cores.
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

echo "== 1/6 prepare"
monaifrac prepare "$SOURCE" --out "$RUN/prepared" --quiet
monaifrac preview "$RUN/prepared" --n 6 > /dev/null
[ -n "$FRACATLAS" ] && monaifrac preview "$RUN/prepared" --ids IMG0002628 IMG0002588 > /dev/null

echo "== 2/6 train (a short run: 2 epochs on 48 films; the full run is 'monaifrac train $RUN/prepared')"
monaifrac train "$RUN/prepared" --bundle-root "$RUN/bundle" --epochs 2 \
    --set max_items=48 val_max_items=16 num_workers=2 2>&1 | grep -E "Metrics --|Saved|error|Error" || true
test -f "$RUN/bundle/models/model.pt"

echo "== 3/6 evaluate (validation part, 32 films)"
monaifrac evaluate "$RUN/prepared" --bundle-root "$RUN/bundle" --set eval_max_items=32 num_workers=2 2>&1 \
    | grep -E "Metrics --|error|Error" || true

echo "== 4/6 infer on a few films with the demo model"
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
monaifrac infer $FILMS --bundle-root "$RUN/bundle" --output-dir "$RUN/inference" --overlays 2>&1 | grep -E "error|Error" || true

# The validation films of the prepared data, as files in their source folder (JPG as users have them).
VALID=$(python - "$SOURCE" "$RUN/prepared" <<'PY'
import json, sys
from pathlib import Path
src, prepared = Path(sys.argv[1]), Path(sys.argv[2])
ids = {d["id"] for d in json.loads((prepared / "datalist.json").read_text())["validation"]}
print(" ".join(str(p) for p in sorted((src / "images").rglob("*.jpg")) if p.stem in ids))
PY
)
if [ -f bundle/models/model.pt ]; then
    MODEL_ROOT=bundle; MODEL_NAME="the shipped model (bundle/models/model.pt)"
else
    MODEL_ROOT="$RUN/bundle"; MODEL_NAME="the demo model (no bundle/models/model.pt in this checkout)"
fi
echo "== 5/6 infer on the $(echo $VALID | wc -w) validation films with $MODEL_NAME"
rm -rf "$RUN/validation"
monaifrac infer $VALID --bundle-root "$MODEL_ROOT" --output-dir "$RUN/validation" 2>&1 | grep -E "error|Error" || true

echo "== 6/6 score against the polygons, and the HTML report"
monaifrac score "$RUN/validation" --truth "$SOURCE" --out "$RUN/score"
monaifrac report "$RUN/score" --out "$RUN/report.html"

echo "== where things are"
echo "prepared data:      $RUN/prepared (datalist.json, prepare_report.json)"
echo "previews:           $RUN/prepared/previews/*.png"
echo "checkpoints:        $RUN/bundle/models (model.pt = best validation fracture Dice of the demo run)"
echo "TensorBoard logs:   $RUN/bundle/eval   ->  .venv/bin/tensorboard --logdir $RUN/bundle/eval"
echo "evaluation:         $RUN/bundle/eval/metrics.json and *_raw.csv (per film)"
echo "masks and overlays: $RUN/inference/<film>.png (labels 0/1/2) and <film>_overlay.png (demo model)"
echo "validation labels:  $RUN/validation/<film>.png and predictions.csv ($MODEL_NAME)"
echo "scores:             $RUN/score/metrics.json and per_film.csv"
echo "report:             $RUN/report.html  <- open it in a browser"
