// Text tables whose columns are as wide as their widest cell, so that no two numbers run
// together and no row shifts its neighbours: right-aligned cells two spaces apart, the last
// column (a note) left-aligned and unpadded. Also as a Markdown table.
#pragma once

#include <string>
#include <vector>

namespace tpp::planner {

class Table {
 public:
  // `units`: an optional second header row ("ms", "GiB"); empty cells where there are none.
  // `note`: the last column is free text, left-aligned; else it is aligned like the others.
  explicit Table(std::vector<std::string> header, std::vector<std::string> units = {},
                 bool note = true);
  void add(std::vector<std::string> cells);
  // A row whose first cell spans the first `span` columns (e.g. "stage 0" under tp, pp, dp).
  void add_spanning(std::string label, std::size_t span, std::vector<std::string> rest);
  // Free text printed under the last row (a note, a per-stage line), not part of the columns.
  void add_text(std::string line);
  std::string str() const;
  std::string markdown() const;

 private:
  struct Row {
    std::vector<std::string> cells;
    std::size_t span = 1;  // the first cell covers this many columns
    std::string text;      // a free-text line instead of cells
  };
  std::vector<std::string> header_, units_;
  bool note_ = true;
  std::vector<Row> rows_;
};

}  // namespace tpp::planner
