#include "common/status.h"

namespace tpp {

std::string Error::str() const {
  std::string out;
  if (!file.empty()) {
    out += file;
    if (line > 0) out += ":" + std::to_string(line) + ":" + std::to_string(col);
    out += ": ";
  }
  out += "error: " + message;
  return out;
}

Error make_error(std::string file, int line, int col, std::string message) {
  return Error{std::move(file), line, col, std::move(message)};
}

}  // namespace tpp
