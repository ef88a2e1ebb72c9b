// Runs f(k) for k in [0, n) on `threads` threads (the caller's among them), each taking the
// next k: the search's and the capacity planner's simulations, one per k.
#pragma once

#include <atomic>
#include <cstddef>
#include <thread>
#include <vector>

namespace tpp::planner {

template <class F>
void parallel_for(std::size_t n, int threads, F f) {
  std::atomic<std::size_t> next{0};
  auto worker = [&] {
    for (std::size_t k; (k = next.fetch_add(1)) < n;) f(k);
  };
  std::vector<std::thread> pool;
  for (int t = 1; t < threads && static_cast<std::size_t>(t) < n; ++t) pool.emplace_back(worker);
  worker();
  for (auto& t : pool) t.join();
}

}  // namespace tpp::planner
