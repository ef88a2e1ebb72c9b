// Running tpp-plan as a user does: in a scratch directory, with its stdout, stderr and exit code.
#pragma once

#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>

#include "test_util.h"

namespace tpp::test {

struct CliRun {
  int code = -1;
  std::string out, err;
};

inline std::string slurp(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs tpp-plan with `args` (shell words) in the test's scratch directory, after `prefix`
// (e.g. "ulimit -v 3000000;" or "VLLM_PP_LAYER_PARTITION=31,30").
inline CliRun tpp_plan(const std::string& args, const std::string& prefix = "") {
  std::filesystem::path dir = std::filesystem::path(write_temp("x", "")).parent_path();
  std::string cmd = "cd '" + dir.string() + "' && " + prefix + " '" + TPP_PLAN + "' " + args +
                    " >out.txt 2>err.txt";
  int status = std::system(cmd.c_str());
  CliRun r;
  r.code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(dir / "out.txt");
  r.err = slurp(dir / "err.txt");
  return r;
}

inline int lines(const std::string& s) {
  return static_cast<int>(std::count(s.begin(), s.end(), '\n'));
}

// Exit 2, nothing on stdout, exactly `expected` as the one line on stderr.
inline void expect_one_line_error(const CliRun& r, const std::string& expected) {
  EXPECT_EQ(r.code, 2);
  EXPECT_EQ(r.out, "");
  EXPECT_EQ(lines(r.err), 1) << r.err;
  EXPECT_EQ(r.err, expected + "\n");
}

}  // namespace tpp::test
