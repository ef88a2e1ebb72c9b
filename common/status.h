// Errors as values: every loader and library call that can fail on user input returns an
// Expected<T>, never throws across a library boundary and never exits. The message names the
// input file, the line and column (1-based; 0 when there is none, e.g. an unreadable file) and
// the field, so that the CLI can print it as one line and exit 2.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace tpp {

struct Error {
  std::string file;     // the input the error is about; empty for a non-file error
  int line = 0;         // 1-based; 0 when the error has no position
  int col = 0;          // 1-based; 0 when the error has no position
  std::string message;  // names the field and the reason, without a trailing newline

  // "file:line:col: error: message", "file: error: message" or "error: message".
  std::string str() const;
};

Error make_error(std::string file, int line, int col, std::string message);

// A piece of user input as it may appear in a message: at most `max` characters (then "..."),
// control bytes shown as '?'.
std::string clip(std::string_view text, std::size_t max = 60);

// A value or an Error. Minimal on purpose (std::expected is C++23).
template <class T>
class Expected {
 public:
  Expected(T value) : v_(std::move(value)) {}        // NOLINT: implicit by design
  Expected(Error error) : v_(std::move(error)) {}    // NOLINT: implicit by design

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }
  T& value() { return std::get<0>(v_); }
  const T& value() const { return std::get<0>(v_); }
  T& operator*() { return value(); }
  const T& operator*() const { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  const Error& error() const { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

}  // namespace tpp
