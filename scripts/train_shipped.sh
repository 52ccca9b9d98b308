#!/usr/bin/env bash
# Rerun the shipped model's recipe end to end: prepare the FracAtlas copy (and the folder of extra normal
# films), train the network on whole films, calibrate its presence score on the official valid films,
# evaluate, score and write the report.
# On a CUDA GPU training uses AMP (train.json's "amp"); on a CPU, float32 (bf16 autocast slows this
# network down on CPUs: bundle/docs/README.md).
#
#   bash scripts/train_shipped.sh [FRACATLAS_DIR] [RUN_DIR]
#   NORMALS=../shared/data/fracatlas-normals EPOCHS=30 WORKERS=8 bash scripts/train_shipped.sh ../shared/data/fracatlas runs/shipped
#
# The recipe (bundle/docs/README.md, "The shipped model"): train.json as it is, the EfficientNet-Lite0 U-Net
# with its presence output from the ImageNet weights, whole films, every fractured training film and as many
# normal ones drawn anew each epoch, AdamW lr 1e-3 on an EPOCHS cosine (default 30). The shipped weights,
# RUN_DIR/model.pt, are the mean weights of the schedule's last AVERAGE epochs (`monaifrac average`; default 14,
# epochs 17-30 of 30, the window the card measured best against the end of the schedule and shorter windows;
# AVERAGE=1: the last epoch's weights; the best epoch by the key metric, picked on the valid films, is
# train/models/model.pt), RUN_DIR/model.<hash>.int8.onnx is their int8 file (`monaifrac quantize`; ship both), and
# scripts/evaluate_model.sh gives the figures in RUN_DIR/valid/.
# An interrupted training resumes exactly from its last checkpoint_epoch=N.pt when the script is run again; a
# finished one (checkpoint_final.pt) is not run again. NORMALS= (empty) leaves the extra normals out; SET="id=value ..."
# passes more overrides to every bundle run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
FRACATLAS=${1:-${MONAIFRAC_FRACATLAS:-../shared/data/fracatlas}}
RUN=${2:-runs/shipped}
NORMALS=${NORMALS-../shared/data/fracatlas-normals}
EPOCHS=${EPOCHS:-30}
WORKERS=${WORKERS:-2}
AVERAGE=${AVERAGE:-14}
read -r -a SETS <<< "num_workers=$WORKERS keep_checkpoints=$AVERAGE ${SET:-}"

SOURCES=("$FRACATLAS")
if [ -n "$NORMALS" ] && [ -d "$NORMALS" ]; then SOURCES+=("$NORMALS"); fi
echo "== prepare ${SOURCES[*]} -> $RUN/prepared"
[ -f "$RUN/prepared/datalist.json" ] || monaifrac prepare "${SOURCES[@]}" --out "$RUN/prepared" --quiet

ROOT=$RUN/train
if [ -f "$ROOT/models/checkpoint_final.pt" ]; then
    echo "== train: finished before ($ROOT)"
else
    resume=$(ls -t "$ROOT"/models/checkpoint_epoch=*.pt 2>/dev/null | head -1 || true)
    if [ -n "$resume" ]; then echo "== train: resuming from $resume"; RESUME=(resume_from="$resume")
    else echo "== train: $EPOCHS epochs from the ImageNet weights"; RESUME=(); fi
    echo "   TensorBoard: tensorboard --logdir $ROOT/eval"
    monaifrac train "$RUN/prepared" --bundle-root "$ROOT" --epochs "$EPOCHS" --set "${SETS[@]}" "${RESUME[@]}"
fi
# the mean weights of the schedule's last AVERAGE epochs (as many as there are, if fewer)
mapfile -t LAST < <(ls -v "$ROOT"/models/checkpoint_epoch=*.pt | tail -n "$AVERAGE")
echo "== average: ${LAST[*]##*/}"
monaifrac average "${LAST[@]}" --out "$RUN/model.pt"
echo "== quantize: the int8 file of these weights, beside them (--engine onnxruntime-int8)"
monaifrac quantize "$RUN/prepared" --model "$RUN/model.pt" --bundle-root "$RUN/quantize" --set "${SETS[@]}" \
    2>&1 | grep -aE "int8 ONNX|error|Error" || true
ls "$RUN"/model.*.int8.onnx > /dev/null

bash scripts/evaluate_model.sh "$RUN/model.pt" "$RUN/prepared" "$RUN/valid" "${SOURCES[@]}"
echo "weights: $RUN/model.pt"
echo "report:  $RUN/valid/report.html"
