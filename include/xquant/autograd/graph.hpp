#pragma once
// backward(): one reverse pass over the recorded graph.
//
// Nodes are ordered by an iterative depth-first search (no recursion, so a graph as deep
// as a long training unroll cannot overflow the stack), then visited from the output
// back; each backward function runs exactly once, after every consumer of its node has
// added its contribution. By default the graph is released afterwards (inputs and
// closures dropped), which frees the saved activations as PyTorch does; leaf gradients
// stay and accumulate across calls until zero_grad().

#include <unordered_set>
#include <vector>

#include "xquant/autograd/variable.hpp"

namespace xquant::autograd {

template <class T>
std::vector<node<T>*> topological_order(node<T>* root) {
  std::vector<node<T>*> order;
  std::unordered_set<node<T>*> visited;
  // Stack of (node, next input index): a post-order walk without recursion.
  std::vector<std::pair<node<T>*, std::size_t>> stack;
  stack.emplace_back(root, 0);
  visited.insert(root);
  while (!stack.empty()) {
    auto& [n, next] = stack.back();
    if (next < n->inputs.size()) {
      node<T>* child = n->inputs[next++].get();
      if (child->requires_grad && visited.insert(child).second) stack.emplace_back(child, 0);
    } else {
      order.push_back(n);
      stack.pop_back();
    }
  }
  return order;  // inputs before the nodes that consume them
}

/// Backpropagates from `root`. With no seed, root must hold a single element and the
/// seed is 1 (d root / d root). With `retain_graph` the graph can be run again.
template <class T>
void backward(const basic_variable<T>& root, const array<T>* seed = nullptr, bool retain_graph = false) {
  node<T>* r = root.node_ptr().get();
  check(r->requires_grad, "backward(): the variable does not require a gradient (no parameter "
                          "with requires_grad took part, or it was computed under no_grad)");
  if (seed) {
    check<shape_error>(seed->shape() == r->value.shape(), "backward(): seed shape ",
                       shape_string(shape_of(*seed)), " differs from the value's ",
                       shape_string(shape_of(r->value)));
    input_grad(*r) += *seed;
  } else {
    check<shape_error>(r->value.size() == 1, "backward() without a seed needs a single-element "
                       "output, got shape ", shape_string(shape_of(r->value)));
    input_grad(*r).data()[0] += T(1);
  }
  const std::vector<node<T>*> order = topological_order(r);
  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    node<T>& n = **it;
    if (n.backward && n.grad.size() == n.value.size()) n.backward(n);
  }
  if (!retain_graph) {
    for (node<T>* n : order) {
      if (n->backward) {  // interior node: drop its graph and its gradient
        n->backward = nullptr;
        n->inputs.clear();
        if (n != r) n->grad = array<T>();
      }
    }
  }
}

}  // namespace xquant::autograd
