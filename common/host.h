// The machine tpp itself runs on (not the cluster it plans for): how much memory a simulation
// may still take, so that a workload too large for this host is refused with one line instead
// of failing half-way.
#pragma once

#include <cstdint>
#include <optional>

namespace tpp {

// The least of: MemAvailable (/proc/meminfo), what the address-space limit (RLIMIT_AS) leaves
// beyond this process's current size, and what the cgroup's memory.max leaves beyond its
// memory.current. nullopt when none of them can be read.
std::optional<std::uint64_t> available_memory_bytes();

// A size field of /proc/self/status in bytes ("VmRSS:" resident now, "VmHWM:" its peak);
// 0 where it cannot be read.
std::int64_t process_status_bytes(const char* field);

}  // namespace tpp
