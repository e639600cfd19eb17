#pragma once
// Every size threshold of the CPU kernels, in one place: the tests read them (bce_ext._C.
// _cpu_thresholds()) and pick sizes on both sides of each. Plain C++, no torch headers: the
// ISA-specific files include it with their own target flags.
#include <cstdint>

namespace bce_ext::cpu::tuning {

// Elements per chunk: the unit of the fixed reduction blocking (so the sum does not depend on the
// number of threads) and of the split between threads, which get whole chunks: small, so that the
// threads get nearly equal shares (at 2^15, N = 1e5 was 3.05 chunks, and one of two threads ran two
// full chunks: 1.31x its share).
constexpr int64_t kChunk = int64_t{1} << 12;
// Elements below which a call runs on one thread: waking the others costs more than they save.
constexpr int64_t kMinParallel = int64_t{1} << 15;
// Elements per call of the inner loops (each chunk is run in blocks of at most kRunBlock, split
// further where a weight table's run ends): fewer calls cost less (512 was 2-6% slower for float
// and double at N = 1e7, benchmarks/RESULTS.md), and the sum of a chunk adds the calls' results in
// order.
constexpr int64_t kRunBlock = 2048;
// A weight table whose real run is shorter than kMinRun elements is tiled to at least kMinRun,
// once a call has more than kMaxShortRuns runs (below that, the short calls cost less than the
// copy).
constexpr int64_t kMinRun = 1024;
constexpr int64_t kMaxShortRuns = 256;
// A weight value repeated fewer than kMinRepeat times in a row (a (C, 1, 1) weight over a small
// H x W) is written out repeated, under the same kMaxShortRuns condition.
constexpr int64_t kMinRepeat = 16;
// The loops (portable and vectorised alike): the sum runs over kSumLanes virtual lanes, each adding
// kSumIters elements in float before its double; kVecBlock elements are also the unit of the
// hard-label decision (a block whose targets are all 0 or 1 takes one log per element).
constexpr int kSumLanes = 16;
constexpr int kSumIters = 16;
constexpr int64_t kVecBlock = int64_t{kSumLanes} * kSumIters;

}  // namespace bce_ext::cpu::tuning
