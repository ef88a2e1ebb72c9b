#include "planner/table.h"

#include <algorithm>

namespace tpp::planner {
namespace {

std::string pad_left(const std::string& s, std::size_t w) {
  return s.size() >= w ? s : std::string(w - s.size(), ' ') + s;
}

}  // namespace

Table::Table(std::vector<std::string> header, std::vector<std::string> units, bool note)
    : header_(std::move(header)), units_(std::move(units)), note_(note) {
  units_.resize(header_.size());
}

void Table::add(std::vector<std::string> cells) {
  cells.resize(header_.size());
  rows_.push_back({std::move(cells), 1, ""});
}

void Table::add_spanning(std::string label, std::size_t span, std::vector<std::string> rest) {
  std::vector<std::string> cells{std::move(label)};
  cells.insert(cells.end(), rest.begin(), rest.end());
  cells.resize(header_.size() - span + 1);
  rows_.push_back({std::move(cells), span, ""});
}

void Table::add_text(std::string line) { rows_.push_back({{}, 1, std::move(line)}); }

std::string Table::str() const {
  // Without a note column every column is padded: as if a last, empty note followed.
  const std::size_t n = header_.size() + (note_ ? 0 : 1);
  std::vector<std::size_t> w(n, 0);
  for (std::size_t k = 0; k + 1 < n; ++k) w[k] = std::max(header_[k].size(), units_[k].size());
  for (const Row& r : rows_)
    if (r.text.empty() && r.span == 1)
      for (std::size_t k = 0; k + 1 < n && k < r.cells.size(); ++k)
        w[k] = std::max(w[k], r.cells[k].size());
  // A spanning label widens the last column it covers when it does not fit in them.
  for (const Row& r : rows_) {
    if (!r.text.empty() || r.span == 1) continue;
    std::size_t room = 2 * (r.span - 1);
    for (std::size_t k = 0; k < r.span; ++k) room += w[k];
    if (r.cells[0].size() > room) w[r.span - 1] += r.cells[0].size() - room;
    for (std::size_t k = 1; k < r.cells.size() && r.span + k < n; ++k)
      w[r.span + k - 1] = std::max(w[r.span + k - 1], r.cells[k].size());
  }
  auto line = [&](const std::vector<std::string>& cells, std::size_t span) {
    std::string s;
    std::size_t col = 0;
    for (std::size_t k = 0; k < cells.size(); ++k) {
      const bool last = col + (k == 0 ? span : 1) >= n;
      if (!last) {
        std::size_t width = w[col];
        if (k == 0)
          for (std::size_t j = 1; j < span; ++j) width += 2 + w[j];
        s += (k == 0 ? "" : "  ") + pad_left(cells[k], width);
      } else {
        s += (k == 0 ? "" : "  ") + cells[k];
      }
      col += k == 0 ? span : 1;
    }
    while (!s.empty() && s.back() == ' ') s.pop_back();
    return s + "\n";
  };
  std::string out = line(header_, 1);
  if (std::any_of(units_.begin(), units_.end(), [](const std::string& u) { return !u.empty(); }))
    out += line(units_, 1);
  for (const Row& r : rows_) out += r.text.empty() ? line(r.cells, r.span) : r.text + "\n";
  return out;
}

std::string Table::markdown() const {
  auto row = [](const std::vector<std::string>& cells) {
    std::string s = "|";
    for (const auto& c : cells) s += " " + c + " |";
    return s + "\n";
  };
  std::vector<std::string> head = header_;
  for (std::size_t k = 0; k < head.size(); ++k)
    if (!units_[k].empty()) head[k] += " (" + units_[k] + ")";
  std::string out = row(head) + "|";
  for (std::size_t k = 0; k < head.size(); ++k) out += "---|";
  out += "\n";
  for (const Row& r : rows_) {
    if (!r.text.empty()) continue;
    std::vector<std::string> cells(r.span - 1);
    cells.insert(cells.begin(), r.cells[0]);
    cells.insert(cells.end(), r.cells.begin() + 1, r.cells.end());
    out += row(cells);
  }
  return out;
}

}  // namespace tpp::planner
