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

std::string clip(std::string_view text, std::size_t max) {
  std::string t(text.substr(0, max));
  if (text.size() > max) t += "...";
  for (char& c : t)
    if (static_cast<unsigned char>(c) < 0x20) c = '?';
  return t;
}

}  // namespace tpp
