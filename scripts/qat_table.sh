#!/usr/bin/env bash
# The README's accuracy table in one command (hours: every model, every bundle):
#   for cnn, resnet and mobilenet: FP32 training (skipped when out/<model>.xqckpt exists),
#   PTQ int8 per-tensor and per-channel, QAT W8A8 / W4A8 / W4A4 (clipped STE) and W4A4 with
#   the first and last layers at W8A8 (--edge8 1), the W8A8 model also converted to int8, and on cnn the W4A4 estimator comparison (STE, clipped
#   STE, LSQ). Logs and checkpoints go to out/; the table is printed at the end.
#   scripts/qat_table.sh [threads]          (default: all cores)
set -euo pipefail
cd "$(dirname "$0")/.."
threads="${1:-$(nproc)}"
scripts/deps.sh
cmake -S . -B build/release -G Ninja -DCMAKE_BUILD_TYPE=Release > /dev/null
cmake --build build/release -j "$(nproc)" --target train qat convert
bin=build/release/examples
mkdir -p out

run_qat() {  # model bundle estimator [edge8: 0|1]
  local edge8="${4:-0}" name="$2.$3"
  [ "$edge8" = 1 ] && name="$name.edge8"
  local log="out/$1.$name.log"
  [ -s "$log" ] && grep -q 'QAT fake-quant test accuracy' "$log" && return 0
  "$bin/qat" --model "$1" --bundle "$2" --estimator "$3" --edge8 "$edge8" --threads "$threads" \
             --from "out/$1.xqckpt" --out "out/${1}_${name//./_}.xqckpt" > "$log"
}
qat_acc() { grep -o 'QAT fake-quant test accuracy [0-9.]*' "out/$1.$2.$3${4:+.$4}.log" | awk '{print $5}'; }
int8_of() { grep -o 'int8 [0-9.]* %' "$1" | awk '{print $2}'; }
same_of() { grep -o 'same class [0-9.]* %' "$1" | awk '{print $3}'; }

for model in cnn resnet mobilenet; do
  if [ ! -s "out/$model.xqckpt" ]; then
    "$bin/train" --model "$model" --threads "$threads" --out "out/$model.xqckpt" > "out/$model.fp32.log"
  fi
  for ptq in per-tensor per-channel; do
    "$bin/convert" --model "$model" --ptq "$ptq" --from "out/$model.xqckpt" > "out/$model.ptq_$ptq.log"
  done
  for bundle in w8a8 w4a8 w4a4; do run_qat "$model" "$bundle" clipped_ste; done
  run_qat "$model" w4a4 clipped_ste 1
  "$bin/convert" --model "$model" --bundle w8a8 --from "out/${model}_w8a8_clipped_ste.xqckpt" > "out/$model.int8.log"
done
"$bin/convert" --model resnet --bundle w4a4 --from out/resnet_w4a4_clipped_ste.xqckpt > out/resnet.int8_w4a4.log
for estimator in ste lsq; do run_qat cnn w4a4 "$estimator"; done

echo "Test accuracy on the 10,000 Fashion-MNIST test images (recipe of shared/reference-models.md):"
echo "| model | FP32 | PTQ int8 per-tensor | PTQ int8 per-channel | W8A8 QAT | W8A8 QAT int8 | same class |" \
     "W4A8 QAT | W4A4 QAT | W4A4 QAT, first and last W8A8 |"
echo "|---|---|---|---|---|---|---|---|---|---|"
for model in cnn resnet mobilenet; do
  fp32=$(grep -o 'fp32 test accuracy [0-9.]*' "out/$model.fp32.log" | awk '{print $4}' || true)
  echo "| $model | ${fp32:-?} % | $(int8_of "out/$model.ptq_per-tensor.log") % |" \
       "$(int8_of "out/$model.ptq_per-channel.log") % | $(qat_acc "$model" w8a8 clipped_ste) % |" \
       "$(int8_of "out/$model.int8.log") % | $(same_of "out/$model.int8.log") % |" \
       "$(qat_acc "$model" w4a8 clipped_ste) % | $(qat_acc "$model" w4a4 clipped_ste) % |" \
       "$(qat_acc "$model" w4a4 clipped_ste edge8) % |"
done
echo
echo "cnn W4A4 QAT by gradient estimator:"
echo "| STE | clipped STE | LSQ |"
echo "|---|---|---|"
echo "| $(qat_acc cnn w4a4 ste) % | $(qat_acc cnn w4a4 clipped_ste) % | $(qat_acc cnn w4a4 lsq) % |"
echo
echo "resnet W4A4 QAT converted to int8: $(int8_of out/resnet.int8_w4a4.log) %, same class $(same_of out/resnet.int8_w4a4.log) %"
