#!/usr/bin/env bash
# The valid figures of a weights file, as the model card reports them: label the validation films of a
# prepared folder (their JPGs in the source folders), fit the presence fusion on them (monaifrac calibrate),
# then evaluate with the bundle, label again with the calibration, score against the truth and write the
# report. Used by scripts/train_shipped.sh after training, and on its own for any checkpoint:
#
#   bash scripts/evaluate_model.sh MODEL PREPARED_DIR OUT_DIR SOURCE_DIR [SOURCE_DIR ...]
#   bash scripts/evaluate_model.sh bundle/models/model.pt data/all runs/valid ../shared/data/fracatlas ../shared/data/fracatlas-normals
#
# MODEL may name an ensemble, its weights files joined by commas (a.pt,b.pt): the films are labelled with
# their class probabilities averaged (monaifrac infer --models); the bundle evaluator runs one network, so
# that step is skipped and the figures are the scorer's.
# SET="id=value ..." passes more overrides to every bundle run (e.g. SET="presence_gate=true").
# Writes OUT_DIR/raw (labels + predictions.csv, before calibration), OUT_DIR/calibration.json,
# OUT_DIR/eval/metrics.json (bundle evaluator), OUT_DIR/labels (calibrated), OUT_DIR/score/metrics.json,
# OUT_DIR/report.html.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
MODEL=$1; PREPARED=$2; OUT=$3; shift 3
IFS=, read -r -a MODELS <<< "$MODEL"
if [ ${#MODELS[@]} -gt 1 ]; then WEIGHTS=(--models "${MODELS[@]}"); else WEIGHTS=(--model "$MODEL"); fi
read -r -a SETS <<< "num_workers=${WORKERS:-2} ${SET:-}"
VALID=$(python - "$PREPARED" "$@" <<'PY'
import json, sys
from pathlib import Path
prepared, sources = Path(sys.argv[1]), [Path(s) for s in sys.argv[2:]]
ids = {d["id"] for d in json.loads((prepared / "datalist.json").read_text())["validation"]}
print(" ".join(str(p) for s in sources for p in sorted((s / "images").rglob("*.jpg")) if p.stem in ids))
PY
)
mkdir -p "$OUT"
echo "== label the $(echo $VALID | wc -w) valid films, fit the presence fusion on them"
rm -rf "$OUT/raw" "$OUT/labels"
monaifrac infer $VALID "${WEIGHTS[@]}" --output-dir "$OUT/raw" --set "${SETS[@]}" 2>&1 | grep -E "error|Error" || true
CAL=()
if monaifrac calibrate "$OUT/raw" --truth "$PREPARED" --out "$OUT" > "$OUT/calibration.txt"; then
    cat "$OUT/calibration.txt"
    read -r -a CAL <<< "$(sed -n 's/^use: --set //p' "$OUT/calibration.txt")"
else
    echo "   no presence fusion (a network without a presence output): the mask's score is the presence score"
fi
echo "== evaluate with the bundle, label again with the calibration, score, report"
if [ ${#MODELS[@]} -gt 1 ]; then
    echo "   an ensemble of ${#MODELS[@]}: the bundle evaluator runs one network, the scorer's figures follow"
else
    monaifrac evaluate "$PREPARED" --bundle-root "$OUT" --model "$MODEL" --set "${SETS[@]}" "${CAL[@]}" 2>&1 \
        | grep -aE "Metrics --|error|Error" || true
fi
monaifrac infer $VALID "${WEIGHTS[@]}" --output-dir "$OUT/labels" --set "${SETS[@]}" "${CAL[@]}" 2>&1 \
    | grep -E "error|Error" || true
monaifrac score "$OUT/labels" --truth "$PREPARED" --out "$OUT/score"
monaifrac report "$OUT/score" --out "$OUT/report.html"
echo "calibration: ${CAL[*]:-none}"
echo "figures: $OUT/eval/metrics.json, $OUT/score/metrics.json   report: $OUT/report.html"
