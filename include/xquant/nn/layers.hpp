#pragma once
// xquant::nn layers: modules with registered, PyTorch-named parameters around the
// functional ops.

#include "xquant/nn/init.hpp"
#include "xquant/nn/layers/activation.hpp"
#include "xquant/nn/layers/batch_norm.hpp"
#include "xquant/nn/layers/conv2d.hpp"
#include "xquant/nn/layers/conv_bn.hpp"
#include "xquant/nn/layers/flatten.hpp"
#include "xquant/nn/layers/linear.hpp"
#include "xquant/nn/layers/pooling.hpp"
#include "xquant/nn/module.hpp"
