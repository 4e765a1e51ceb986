#pragma once
// xquant: quantized tensors for QAT, PTQ and integer-only inference. The umbrella header.

#include "xquant/version.hpp"

#include "xquant/core/error.hpp"
#include "xquant/core/tensor.hpp"

#include "xquant/quant/range.hpp"
#include "xquant/quant/tags.hpp"
#include "xquant/quant/scheme.hpp"
#include "xquant/quant/params.hpp"
#include "xquant/quant/rounding.hpp"
#include "xquant/quant/choose_params.hpp"
#include "xquant/quant/quantize.hpp"
#include "xquant/quant/packing.hpp"
#include "xquant/quant/quantized_tensor.hpp"

#include "xquant/calib/observers.hpp"
