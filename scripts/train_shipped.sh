#!/usr/bin/env bash
# Rerun the shipped model's recipe end to end: prepare the FracAtlas copy (and the folders of extra normal films
# and of the large scans), train, calibrate the presence score on the official valid films, evaluate, score and
# write the report. On a CUDA GPU training uses AMP (train.json's "amp"); on a CPU, float32 (bf16 autocast slows
# this network down on CPUs: bundle/docs/README.md).
#
#   bash scripts/train_shipped.sh [FRACATLAS_DIR] [RUN_DIR]
#   EPOCHS=30 WORKERS=8 bash scripts/train_shipped.sh ../shared/data/fracatlas runs/shipped
#
# The recipe (bundle/docs/README.md, "The shipped model"), in two stages:
# 1. base: the EfficientNet-Lite0 U-Net with its presence output from the ImageNet weights, whole films at 1x
#    (film_scale=1), FRACATLAS + NORMALS (509 fractured training films), every fractured film and as many normal
#    ones drawn anew each epoch, AdamW lr 1e-3 on an EPOCHS cosine (default 30); RUN_DIR/base.pt is the mean
#    weights of its last AVERAGE epochs (`monaifrac average`; default 14, epochs 17-30 of 30).
# 2. scale: train.json as it is (film_scale 1.5, 480 x 480 crops of the enlarged film), all 574 training
#    fractures (+ LARGE), warm-started from base.pt, one SCALE_EPOCHS cosine (default 5) per learning rate of
#    SCALE_LRS (default "3e-4 1.5e-4"), each cycle starting from the last epoch of the one before.
# The shipped weights, RUN_DIR/model.pt, are the mean of the last cycle's last SCALE_AVERAGE epochs (default 1:
# its last epoch); RUN_DIR/model.<hash>.int8.onnx is their int8 file (`monaifrac quantize`; ship both), and
# scripts/evaluate_model.sh gives the figures in RUN_DIR/valid/ (fit the presence fusion and threshold, then
# evaluate with the presence gate on: SET="presence_gate=true" is what inference.json ships).
# An interrupted training resumes exactly from its last checkpoint_epoch=N.pt when the script is run again; a
# finished one (checkpoint_final.pt) is not run again. NORMALS= / LARGE= (empty) leave those folders out;
# SET="id=value ..." passes more overrides to every bundle run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export PATH="$PWD/.venv/bin:$PATH"
FRACATLAS=${1:-${MONAIFRAC_FRACATLAS:-../shared/data/fracatlas}}
RUN=${2:-runs/shipped}
NORMALS=${NORMALS-../shared/data/fracatlas-normals}
LARGE=${LARGE-../shared/data/fracatlas-large}
EPOCHS=${EPOCHS:-30}
WORKERS=${WORKERS:-2}
AVERAGE=${AVERAGE:-14}
SCALE_EPOCHS=${SCALE_EPOCHS:-5}
read -r -a SCALE_LRS <<< "${SCALE_LRS:-3e-4 1.5e-4}"
SCALE_AVERAGE=${SCALE_AVERAGE:-1}
read -r -a SETS <<< "num_workers=$WORKERS ${SET:-}"

SOURCES=("$FRACATLAS")
if [ -n "$NORMALS" ] && [ -d "$NORMALS" ]; then SOURCES+=("$NORMALS"); fi
ALL=("${SOURCES[@]}")
if [ -n "$LARGE" ] && [ -d "$LARGE" ]; then ALL+=("$LARGE"); fi

prepare() {  # prepare OUT SOURCE...
    local out=$1; shift
    echo "== prepare $* -> $out"
    [ -f "$out/datalist.json" ] || monaifrac prepare "$@" --out "$out" --quiet
}

train() {  # train ROOT PREPARED EPOCHS KEEP what [--set ...]: resumes, or leaves a finished run alone
    local root=$1 prepared=$2 epochs=$3 keep=$4 what=$5; shift 5
    if [ -f "$root/models/checkpoint_final.pt" ]; then echo "== train: finished before ($root)"; return; fi
    local resume; resume=$(ls -v "$root"/models/checkpoint_epoch=*.pt 2>/dev/null | tail -1 || true)
    local more=()
    if [ -n "$resume" ]; then echo "== train: resuming from $resume"; more=(resume_from="$resume")
    else echo "== train: $epochs epochs $what"; fi
    echo "   TensorBoard: tensorboard --logdir $root/eval"
    monaifrac train "$prepared" --bundle-root "$root" --epochs "$epochs" --set "${SETS[@]}" keep_checkpoints="$keep" \
        "$@" "${more[@]}"
}

average() {  # average ROOT N OUT: the mean weights of the run's last N epochs (as many as there are, if fewer)
    local last; mapfile -t last < <(ls -v "$1"/models/checkpoint_epoch=*.pt | tail -n "$2")
    echo "== average: ${last[*]##*/}"
    monaifrac average "${last[@]}" --out "$3"
}

prepare "$RUN/prepared" "${SOURCES[@]}"
train "$RUN/train" "$RUN/prepared" "$EPOCHS" "$AVERAGE" "from the ImageNet weights at 1x" film_scale=1
average "$RUN/train" "$AVERAGE" "$RUN/base.pt"

prepare "$RUN/prepared-all" "${ALL[@]}"
START=$RUN/base.pt
for i in "${!SCALE_LRS[@]}"; do
    ROOT=$RUN/scale$((i + 1))
    train "$ROOT" "$RUN/prepared-all" "$SCALE_EPOCHS" "$SCALE_AVERAGE" "at train.json's film_scale from $START" \
        init_from="$START" learning_rate="${SCALE_LRS[$i]}"
    START=$(ls -v "$ROOT"/models/checkpoint_epoch=*.pt | tail -1)
done
average "$ROOT" "$SCALE_AVERAGE" "$RUN/model.pt"

echo "== quantize: the int8 file of these weights, beside them (--engine onnxruntime-int8)"
monaifrac quantize "$RUN/prepared-all" --model "$RUN/model.pt" --bundle-root "$RUN/quantize" --set "${SETS[@]}" \
    2>&1 | grep -aE "int8 ONNX|error|Error" || true
ls "$RUN"/model.*.int8.onnx > /dev/null

SET="${SET:-} presence_gate=true" bash scripts/evaluate_model.sh "$RUN/model.pt" "$RUN/prepared-all" "$RUN/valid" "${ALL[@]}"
echo "weights: $RUN/model.pt"
echo "report:  $RUN/valid/report.html"
