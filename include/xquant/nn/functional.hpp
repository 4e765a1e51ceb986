#pragma once
// xquant::nn::functional: the differentiable ops of the layers, templated on the scalar
// (float for training, double for the gradient checks). Each op validates its inputs,
// computes its forward eagerly and records its backward next to it.

#include "xquant/nn/functional/activation.hpp"
#include "xquant/nn/functional/batch_norm.hpp"
#include "xquant/nn/functional/conv2d.hpp"
#include "xquant/nn/functional/linear.hpp"
#include "xquant/nn/functional/loss.hpp"
#include "xquant/nn/functional/pooling.hpp"
#include "xquant/nn/functional/shape_ops.hpp"
