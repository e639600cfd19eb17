#pragma once
// The kernel variant flags of the loss kernels (loss_cuda_driver.cuh): the compile-time choices
// one kernel instance is made for, so that an instance's loop holds only the work its call needs.
//
// Four of them are the axes the CPU loops have too (csrc/cpu/loops.h, csrc/cpu/vec/loops_impl.h):
//   kReduce       Loops::forward_sum ('mean', 'sum') against Loops::forward_none ('none')
//   kWeighted     Run::w, an Operand whose ptr is null when absent (loops_impl.h: the kW template
//                 parameter, a Table: kAbsent, kBroadcast, kPerElement, kStored)
//   kPosWeighted  Run::pw (loops_impl.h: kP, the same Table kinds; E::kPosWeight on both sides)
//   kSmooth       LossParams::label_smoothing != 0 (csrc/loss_types.h), which the CPU loops
//                 test at run time (loops_impl.h: Smoothing::on)
// and kGradScalar is the CPU's g == nullptr with g_scalar in Loops::backward (loops_impl.h:
// kGradBroadcast), kIgnore the CPU loops' kIgnore (LossParams::ignore). kStrict has no CPU
// counterpart: the CPU loops always report a bad value (Loops::forward_sum's and forward_none's
// *bad), and loss_cpu.cpp then raises for the first bad element, as strict mode does here.

namespace bce_ext::cuda {

// Kernel variants: the compile-time flags of one kernel instance (with_flags makes them from
// run-time ones). A loss gets only the variants it can use (no strict mode without a range check,
// no positive weight where it takes none).
enum Variant : int {
  kReduce = 1 << 0,       // forward: 'mean' or 'sum' (else 'none')
  kStrict = 1 << 1,       // forward: record the first bad index of x and of t
  kWeighted = 1 << 2,     // a weight table
  kPosWeighted = 1 << 3,  // a positive-weight table
  kSmooth = 1 << 4,       // label smoothing
  kGradScalar = 1 << 5,   // backward: one incoming gradient for every element
  kIgnore = 1 << 6,       // an ignore_index (the forward's reductions also count what they keep)
};

}  // namespace bce_ext::cuda
