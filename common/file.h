// Input files, read safely: anything but a regular file (a directory, a FIFO, a device, a
// socket, a symbolic-link loop or a dangling link) is refused by what it is, before a byte is
// read, and a regular file is read only up to its limit, so no input can hang the reader or
// exhaust memory (/dev/zero, a named pipe, a 2 GiB file).
#pragma once

#include <cstddef>
#include <string>

#include "common/status.h"

namespace tpp {

inline constexpr std::size_t kMaxInputBytes = 4u << 20;  // configs are a few KiB

enum class PathKind { kRegular, kDirectory, kMissing, kOther };

struct PathInfo {
  PathKind kind = PathKind::kMissing;
  // For kOther and kMissing, what the path is, as a sentence's predicate: "is a FIFO (named
  // pipe)", "is a character device", "is a symbolic link loop", "is a symbolic link to 'x',
  // which does not exist", "cannot be read: Permission denied", "does not exist".
  std::string what;
  bool names_a_kind = false;  // "is a FIFO (named pipe)": a message may add ", not a model file"
};

// Follows symbolic links; never opens the path.
PathInfo inspect_path(const std::string& path);

// Reads a regular file of at most `max_bytes`. Errors (file = path, no position unless noted):
// not a regular file (says what it is), larger than the limit (says by how much), unreadable,
// empty, binary (a NUL byte: line and column of it). `what` names the file's role in messages
// ("model", "trace").
Expected<std::string> read_text_file(const std::string& path, const char* what,
                                     std::size_t max_bytes = kMaxInputBytes);

}  // namespace tpp
