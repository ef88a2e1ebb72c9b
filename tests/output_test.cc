// What a user reads: tables whose columns line up whatever the numbers, a breakdown whose parts
// add up to the whole, and docs whose examples are what the program prints and loads.
#include <gtest/gtest.h>

#include <regex>

#include "cli_util.h"
#include "common/doc.h"
#include "hardware_profiles/hardware.h"
#include "planner/table.h"

namespace tpp {
namespace {

using test::CliRun;
using test::tpp_plan;

const std::string kRoot = std::string(TPP_EXAMPLES) + "/../..";

std::vector<std::string> split_lines(const std::string& s) {
  std::vector<std::string> out;
  std::stringstream ss(s);
  for (std::string line; std::getline(ss, line);) out.push_back(line);
  return out;
}

// The right edge of each header cell (cells are two spaces apart; a header may hold one space):
// where every cell of that column must end.
std::vector<std::size_t> right_edges(const std::string& header) {
  std::vector<std::size_t> edges;
  for (std::size_t k = 0; k < header.size(); ++k)
    if (header[k] != ' ' && (k + 1 == header.size() || header.compare(k + 1, 2, "  ") == 0))
      edges.push_back(k);
  return edges;
}

TEST(TableOutput, WideNumbersNeverRunTogether) {
  planner::Table t({"tokens", "conc.", "note"}, {"", "x", ""});
  t.add({"443,472", "27717.0", "fine"});
  t.add({"1", "2", ""});
  t.add_spanning("a long label", 2, {"spans"});
  EXPECT_EQ(t.str(),
            " tokens    conc.  note\n"
            "               x\n"
            "443,472  27717.0  fine\n"
            "      1        2\n"
            "    a long label  spans\n");
  EXPECT_EQ(t.markdown(),
            "| tokens | conc. (x) | note |\n|---|---|---|\n| 443,472 | 27717.0 | fine |\n"
            "| 1 | 2 |  |\n| a long label |  | spans |\n");
}

// Every data row of the search table ends each cell at its header's right edge, with a space
// after it: no cell runs into the next and no row shifts (R1 on 128 GPUs has the widest
// figures of the catalog).
TEST(TableOutput, SearchTableColumnsLineUp) {
  CliRun r = tpp_plan("--model r1 --cluster a100x16 --top 0");
  ASSERT_EQ(r.code, 0) << r.err;
  auto lines = split_lines(r.out);
  auto head = std::find_if(lines.begin(), lines.end(),
                           [](const std::string& l) { return l.rfind("rank  tp", 0) == 0; });
  ASSERT_NE(head, lines.end());
  const auto edges = right_edges(head->substr(0, head->find("note")));
  ASSERT_EQ(edges.size(), 16u);
  EXPECT_NE(head->find("TTFT p50/p99"), std::string::npos);
  EXPECT_NE((head + 1)->find("ms            ms"), std::string::npos) << *(head + 1);
  int rows = 0;
  for (auto it = head + 2; it != lines.end() && it->find(" ranked") == std::string::npos; ++it) {
    ++rows;
    for (std::size_t e : edges) {
      ASSERT_LT(e, it->size()) << *it;
      EXPECT_NE((*it)[e], ' ') << "column ending at " << e << ": " << *it;
      if (e + 1 < it->size()) {  // a row without a note ends at the last column
        EXPECT_EQ((*it)[e + 1], ' ') << "column ending at " << e << ": " << *it;
      }
    }
  }
  EXPECT_GT(rows, 5);  // every ranked split and the five closest rejected ones
}

// "stage 0: compute A s (a%) + TP comm B s (b%) + ... = T s": the parts add up to T.
TEST(TableOutput, StageBreakdownAddsUpToTheMakespan) {
  CliRun r = tpp_plan("--model r1 --cluster h100x2 --workload chat --tp 8 --pp 2");
  ASSERT_EQ(r.code, 0) << r.err;
  const std::regex stage("stage [0-9]+: (.*) = ([0-9.]+) s");
  const std::regex part("([0-9.]+) s \\(([0-9]+)%\\)");
  int stages = 0;
  for (const auto& line : split_lines(r.out)) {
    std::smatch m;
    if (!std::regex_search(line, m, stage)) continue;
    ++stages;
    const double total = std::stod(m[2]);
    const std::string parts = m[1];
    double sum = 0;
    int n = 0;
    for (std::sregex_iterator it(parts.begin(), parts.end(), part), end; it != end; ++it, ++n)
      sum += std::stod((*it)[1]);
    EXPECT_EQ(n, 6) << line;                 // compute, TP, EP, PP send, host, idle
    EXPECT_NEAR(sum, total, 6 * 0.005) << line;  // each part rounded to 0.01 s
  }
  EXPECT_EQ(stages, 2);
}

// A README line with "..." matches any text there; a line that is only "..." any run of lines;
// the search time ("in 0.41 s") any time.
std::regex line_pattern(const std::string& line) {
  std::string out;
  static const std::string special = "\\^$.|?*+()[]{}";
  for (std::size_t k = 0; k < line.size(); ++k) {
    if (line.compare(k, 3, "...") == 0) {
      out += ".*";
      k += 2;
    } else {
      if (special.find(line[k]) != std::string::npos) out += '\\';
      out += line[k];
    }
  }
  out = std::regex_replace(out, std::regex("in [0-9]+\\\\\\.[0-9]+ s"), "in [0-9.]+ s");
  return std::regex(out);
}

// Each block of the README that shows a tpp-plan command and its output is what that command
// prints today, in order, with "..." for what the block leaves out.
TEST(DocsOutput, ReadmeExamplesAreWhatTheCommandsPrint) {
  auto readme = split_lines(test::slurp(kRoot + "/README.md"));
  int blocks = 0;
  for (std::size_t k = 0; k < readme.size(); ++k) {
    if (readme[k].rfind("$ tpp-plan ", 0) != 0) continue;
    ++blocks;
    CliRun r = tpp_plan(readme[k].substr(11));
    ASSERT_EQ(r.code, 0) << readme[k] << "\n" << r.err;
    auto out = split_lines(r.out);
    std::size_t at = 0;
    for (std::size_t j = k + 1; j < readme.size() && readme[j] != "```"; ++j) {
      if (readme[j] == "...") continue;
      const std::regex want = line_pattern(readme[j]);
      while (at < out.size() && !std::regex_match(out[at], want)) ++at;
      ASSERT_LT(at, out.size()) << "README line " << j + 1 << " is not printed (in order) by `"
                                << readme[k] << "`:\n" << readme[j] << "\n---\n" << r.out;
      ++at;
    }
  }
  EXPECT_EQ(blocks, 2);
}

// The YAML examples of docs/hardware-profiles.md load as they are written.
TEST(DocsOutput, HardwareProfileExamplesLoad) {
  auto doc = split_lines(test::slurp(kRoot + "/docs/hardware-profiles.md"));
  int examples = 0;
  for (std::size_t k = 0; k < doc.size(); ++k) {
    if (doc[k] != "```yaml") continue;
    std::string text;
    for (++k; k < doc.size() && doc[k] != "```"; ++k) text += doc[k] + "\n";
    std::string path = test::write_temp("example" + std::to_string(examples++) + ".yaml", text);
    auto c = hw::load_cluster(path);
    EXPECT_TRUE(c) << c.error().str();
  }
  EXPECT_EQ(examples, 2);
}

}  // namespace
}  // namespace tpp
