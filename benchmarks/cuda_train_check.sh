#!/bin/bash
# The project's own training path on a GPU, then the same on the CPU, each
# trained model evaluated through the served (CPU) path:
#   DATA=<one data folder> [EPOCHS=8] [DEVICES="cuda cpu"] [PY=python3] [MODELS="cnn_msd|crnn_msd --lr 0.0003"] \
#     benchmarks/cuda_train_check.sh
# (MODELS: `core train` argument lists split by |, @A@ the run's artifacts folder; default the
# from-scratch models: cnn, the full-window crnn, its stage 2.)
# On the device machine (bare Python with torch; see README, "Training time"),
# WHEELS=<folder of av, soundfile, cffi, pycparser and soxr wheels> installs them first, and
# CHECKPOINTS=<a musicnn folder holding MSD_vgg/> puts the wheel's MSD weights beside them.
set -o pipefail; export PYTHONUNBUFFERED=1
if [ -n "${WHEELS:-}" ]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site "$WHEELS"/*.whl || exit 3
  export PYTHONPATH=/tmp/site:.
fi
if [ -n "${CHECKPOINTS:-}" ]; then mkdir -p /tmp/site && cp -r "$CHECKPOINTS" /tmp/site/musicnn; fi
PY=${PY:-python3}; D=${DATA:?DATA=<data folder>}; E=${EPOCHS:-8}
$PY -c "import core.training.train, core.cli.main, torch; print('imports ok, cuda', torch.cuda.is_available())" || exit 4
for dev in ${DEVICES:-cuda cpu}; do
  A=/tmp/cuda_check_$dev; rm -rf "$A"
  IFS='|' read -ra runs <<< "${MODELS:-cnn|crnn --full-window|crnn --recurrent-only --init-from @A@/crnn.safetensors}"
  for run in "${runs[@]}"; do
    args=${run//@A@/$A}; s=$SECONDS
    # shellcheck disable=SC2086   # $args is a list of options
    $PY -m core train --data "$D" --model $args --epochs "$E" --out "$A" --device "$dev" --cache /tmp/cuda_check_cache 2>&1 \
      | grep -E "epoch|train_seconds|rror" | tail -$((E + 1)) || exit 5
    echo "== $dev $args: $((SECONDS - s)) s wall"
  done
  $PY -m core evaluate --data "$D" --split val --artifacts "$A" 2>&1 | grep -E "AUC|rror" || exit 6
done
