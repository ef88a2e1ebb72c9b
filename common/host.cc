#include "common/host.h"

#include <sys/resource.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>

namespace tpp {
namespace {

std::optional<std::uint64_t> meminfo_available() {
  std::ifstream in("/proc/meminfo");
  std::string key;
  std::uint64_t kib = 0;
  std::string unit;
  while (in >> key >> kib >> unit)
    if (key == "MemAvailable:") return kib * 1024;
  return std::nullopt;
}

std::optional<std::uint64_t> read_number(const char* path) {
  std::ifstream in(path);
  std::string s;
  if (!(in >> s) || s == "max") return std::nullopt;
  try {
    return std::stoull(s);
  } catch (...) {
    return std::nullopt;
  }
}

std::optional<std::uint64_t> address_space_left() {
  struct rlimit lim {};
  if (getrlimit(RLIMIT_AS, &lim) != 0 || lim.rlim_cur == RLIM_INFINITY) return std::nullopt;
  std::ifstream statm("/proc/self/statm");
  std::uint64_t pages = 0;
  statm >> pages;
  const std::uint64_t used = pages * 4096;
  return lim.rlim_cur > used ? lim.rlim_cur - used : 0;
}

std::optional<std::uint64_t> cgroup_left() {
  auto max = read_number("/sys/fs/cgroup/memory.max");
  auto cur = read_number("/sys/fs/cgroup/memory.current");
  if (!max || !cur) return std::nullopt;
  return *max > *cur ? *max - *cur : 0;
}

}  // namespace

std::optional<std::uint64_t> available_memory_bytes() {
  std::optional<std::uint64_t> best;
  for (auto v : {meminfo_available(), address_space_left(), cgroup_left()})
    if (v) best = best ? std::min(*best, *v) : *v;
  return best;
}

std::int64_t process_status_bytes(const char* field) {
  std::ifstream in("/proc/self/status");
  std::string key;
  while (in >> key) {
    if (key == field) {
      std::int64_t kib = 0;
      in >> kib;
      return kib * 1024;
    }
    std::string rest;
    std::getline(in, rest);
  }
  return 0;
}

}  // namespace tpp
