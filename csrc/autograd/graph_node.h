#pragma once
// A new autograd graph node of type T, held as this torch's autograd edges hold nodes:
// std::shared_ptr in older releases, c10::intrusive_ptr in newer ones (the losses' nodes,
// loss_autograd.cpp, and the SigLIP loss's, csrc/siglip/siglip_loss.cpp).
#include <torch/csrc/autograd/function.h>

#include <memory>
#include <type_traits>

namespace bce_ext {

using NodePtr = decltype(torch::autograd::Edge::function);

template <class T>
auto make_node() {
  if constexpr (std::is_same_v<NodePtr, std::shared_ptr<torch::autograd::Node>>) {
    return std::shared_ptr<T>(new T());
  } else {
    return c10::make_intrusive<T>();
  }
}

}  // namespace bce_ext
