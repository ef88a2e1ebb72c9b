#include "common/file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <cstring>

namespace tpp {
namespace {

std::string kind_of(mode_t mode) {
  if (S_ISDIR(mode)) return "is a directory";
  if (S_ISFIFO(mode)) return "is a FIFO (named pipe)";
  if (S_ISCHR(mode)) return "is a character device";
  if (S_ISBLK(mode)) return "is a block device";
  if (S_ISSOCK(mode)) return "is a socket";
  return "is not a regular file";
}

std::pair<int, int> line_col_at(const std::string& text, std::size_t offset) {
  int line = 1, col = 1;
  for (std::size_t k = 0; k < offset && k < text.size(); ++k) {
    if (text[k] == '\n') { ++line; col = 1; } else { ++col; }
  }
  return {line, col};
}

std::string mib(std::size_t bytes) { return std::to_string(bytes >> 20) + " MiB"; }

}  // namespace

PathInfo inspect_path(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISREG(st.st_mode)) return {PathKind::kRegular, ""};
    if (S_ISDIR(st.st_mode)) return {PathKind::kDirectory, "is a directory", true};
    return {PathKind::kOther, kind_of(st.st_mode), true};
  }
  const int err = errno;
  if (err == ELOOP) return {PathKind::kOther, "is a symbolic link loop", true};
  if (err == ENOENT) {
    struct stat lst {};
    if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
      char target[PATH_MAX];
      ssize_t n = ::readlink(path.c_str(), target, sizeof target - 1);
      std::string to = n > 0 ? std::string(target, static_cast<std::size_t>(n)) : "?";
      return {PathKind::kOther, "is a symbolic link to '" + to + "', which does not exist"};
    }
    return {PathKind::kMissing, "does not exist"};
  }
  if (err == ENOTDIR) return {PathKind::kMissing, "does not exist (a part of it is not a directory)"};
  return {PathKind::kOther, std::string("cannot be read: ") + std::strerror(err)};
}

Expected<std::string> read_text_file(const std::string& path, const char* what,
                                     std::size_t max_bytes) {
  const std::string role(what);
  // O_NONBLOCK: opening a FIFO must not wait for a writer; the kind is checked on the open
  // descriptor, so nothing can be swapped in between the check and the read.
  int fd = ::open(path.c_str(), O_RDONLY | O_NONBLOCK | O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    PathInfo info = inspect_path(path);
    if (info.kind == PathKind::kMissing)
      return make_error(path, 0, 0, "cannot read " + role + " file: " + std::strerror(err));
    return make_error(path, 0, 0, info.what + (info.names_a_kind ? ", not a " + role + " file" : ""));
  }
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    std::string kind = kind_of(st.st_mode);
    ::close(fd);
    return make_error(path, 0, 0, kind + ", not a " + role + " file");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size > max_bytes) {
    ::close(fd);
    return make_error(path, 0, 0, role + " file is larger than " + mib(max_bytes) + " (" +
                                      std::to_string(size) + " bytes)");
  }
  std::string text(std::min(size, max_bytes) + 1, '\0');
  std::size_t got = 0;
  while (got < text.size()) {  // at most max_bytes + 1: a file that grew is still caught
    ssize_t n = ::read(fd, text.data() + got, text.size() - got);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      const int err = errno;
      ::close(fd);
      return make_error(path, 0, 0, "cannot read " + role + " file: " + std::strerror(err));
    }
    if (n == 0) break;
    got += static_cast<std::size_t>(n);
    if (got == text.size() && got <= max_bytes) text.resize(std::min(2 * got, max_bytes + 1));
  }
  ::close(fd);
  text.resize(got);
  if (got > max_bytes)
    return make_error(path, 0, 0, role + " file is larger than " + mib(max_bytes));
  std::size_t nul = text.find('\0');
  if (nul != std::string::npos) {
    auto [l, c] = line_col_at(text, nul);
    return make_error(path, l, c, role + " file is binary (NUL byte at offset " +
                                      std::to_string(nul) + ")");
  }
  if (text.find_first_not_of(" \t\r\n") == std::string::npos)
    return make_error(path, 1, 1, role + " file is empty");
  return text;
}

}  // namespace tpp
