#!/usr/bin/env bash
# The main job: installs missing dependencies, builds the examples, then on Fashion-MNIST
#   1. trains a reference model in FP32 (the recipe of shared/reference-models.md),
#   2. fine-tunes it with quantization-aware training (W8A8, 3 epochs),
#   3. runs the quantization demo (every policy on the real images),
# and prints the result table. Integer-only int8 inference is not built yet (issue 5).
#   scripts/run.sh [cnn|mobilenet|resnet]     (default cnn; checkpoints go to out/)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-cnn}"
scripts/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build/release -j "$(nproc)" --target train qat quantize_demo
mkdir -p out
threads=$(nproc)
bin=build/release/examples

"$bin/train" --model "$model" --threads "$threads" --out "out/$model.xqckpt" | tee "out/$model.fp32.log"
"$bin/qat" --model "$model" --bundle w8a8 --threads "$threads" --from "out/$model.xqckpt" \
           --out "out/${model}_w8a8.xqckpt" | tee "out/$model.w8a8.log"
"$bin/quantize_demo"

fp32=$(grep -o 'fp32 test accuracy [0-9.]*' "out/$model.fp32.log" | awk '{print $4}')
qat=$(grep -o 'QAT fake-quant test accuracy [0-9.]*' "out/$model.w8a8.log" | awk '{print $5}')
echo
echo "| model | FP32 | W8A8 QAT (fake-quant) |"
echo "|---|---|---|"
echo "| $model | $fp32 % | $qat % |"
