#!/usr/bin/env bash
# The main job: installs missing dependencies, builds the examples, then on Fashion-MNIST
#   1. trains a reference model in FP32 (the recipe of shared/reference-models.md),
#   2. fine-tunes it with quantization-aware training (W8A8, 3 epochs),
#   3. converts the QAT model to integer-only int8 inference and classifies the test set
#      with it; also post-training quantization (min/max calibration) of the FP32 model,
#      per-channel and per-tensor weights, through the same conversion,
#   4. runs the quantization demo (every policy on the real images),
# and prints the result table.
#   scripts/run.sh [cnn|mobilenet|resnet]     (default cnn; checkpoints go to out/)
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-cnn}"
scripts/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build/release -j "$(nproc)" --target train qat convert quantize_demo
mkdir -p out
threads=$(nproc)
bin=build/release/examples

"$bin/train" --model "$model" --threads "$threads" --out "out/$model.xqckpt" | tee "out/$model.fp32.log"
"$bin/qat" --model "$model" --bundle w8a8 --threads "$threads" --from "out/$model.xqckpt" \
           --out "out/${model}_w8a8.xqckpt" | tee "out/$model.w8a8.log"
"$bin/convert" --model "$model" --bundle w8a8 --from "out/${model}_w8a8.xqckpt" | tee "out/$model.int8.log"
"$bin/convert" --model "$model" --ptq per-channel --from "out/$model.xqckpt" | tee "out/$model.ptq_channel.log"
"$bin/convert" --model "$model" --ptq per-tensor --from "out/$model.xqckpt" | tee "out/$model.ptq_tensor.log"
"$bin/quantize_demo"

fp32=$(grep -o 'fp32 test accuracy [0-9.]*' "out/$model.fp32.log" | awk '{print $4}')
qat=$(grep -o 'QAT fake-quant test accuracy [0-9.]*' "out/$model.w8a8.log" | awk '{print $5}')
int8_of() { grep -o 'int8 [0-9.]* %' "$1" | awk '{print $2}'; }
same_of() { grep -o 'same class [0-9.]* %' "$1" | awk '{print $3}'; }
echo
echo "Test accuracy on the 10,000 Fashion-MNIST test images ($model):"
echo "| FP32 | PTQ int8 per-tensor | PTQ int8 per-channel | W8A8 QAT fake-quant | W8A8 QAT int8 | int8 = fake-quant class |"
echo "|---|---|---|---|---|---|"
echo "| $fp32 % | $(int8_of "out/$model.ptq_tensor.log") % | $(int8_of "out/$model.ptq_channel.log") % | $qat % |" \
     "$(int8_of "out/$model.int8.log") % | $(same_of "out/$model.int8.log") % |"
