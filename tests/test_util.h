// Helpers shared by the tests: paths to shipped data and a model loader that fails the test
// with the loader's own message.
#pragma once

#include <gtest/gtest.h>

#include <cctype>
#include <string>

#include "model/load.h"
#include "simulator/parallel.h"

namespace tpp::test {

inline std::string example(const std::string& name) {
  return std::string(TPP_EXAMPLES) + "/" + name;
}
inline std::string hf(const std::string& name) {
  return std::string(TPP_TEST_DATA) + "/hf/" + name;
}

// A gtest parameter name from a file name: its stem, anything but letters and digits as '_'.
inline std::string file_param_name(std::string n) {
  n = n.substr(0, n.find(".json"));
  for (char& c : n)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return n;
}

inline model::Model load_or_die(const std::string& path) {
  auto m = model::load_model(path);
  if (!m) ADD_FAILURE() << m.error().str();
  return m ? *m : model::Model{};
}

}  // namespace tpp::test

#include <filesystem>
#include <fstream>

#include <unistd.h>

namespace tpp::test {

// Writes `text` to a fresh file named `name` under a per-test temporary directory.
inline std::string write_temp(const std::string& name, const std::string& text) {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  // Per process too: two suites run at once on one machine (a CI clone beside a checkout) must
  // not share a test's scratch files.
  std::filesystem::path dir = std::filesystem::temp_directory_path() / "tpp_tests" /
                              (std::string(info->test_suite_name()) + "." + info->name() + "." +
                               std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  std::filesystem::path p = dir / name;
  std::filesystem::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << text;
  return p.string();
}

}  // namespace tpp::test

namespace tpp::test {

// An error line with the temporary directory of `path` cut off, so tests can assert it whole.
inline std::string relative_error(const Error& e, const std::string& path) {
  std::string s = e.str();
  std::string dir = std::filesystem::path(path).parent_path().string() + "/";
  if (s.rfind(dir, 0) == 0) s = s.substr(dir.size());
  return s;
}

}  // namespace tpp::test

namespace tpp::test {

// `text` with the first `from` replaced by `to`; a test failure when `from` is not there.
inline std::string replace(std::string text, const std::string& from, const std::string& to) {
  auto k = text.find(from);
  EXPECT_NE(k, std::string::npos) << from;
  if (k != std::string::npos) text.replace(k, from.size(), to);
  return text;
}

}  // namespace tpp::test

namespace tpp::test {

// A TP x PP split with one replica.
inline sim::ParallelConfig split(std::int64_t tp, std::int64_t pp = 1) {
  sim::ParallelConfig p;
  p.tp = tp;
  p.pp = pp;
  return p;
}

}  // namespace tpp::test
