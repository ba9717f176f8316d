// Table: a plain-text table with aligned columns, as kubectl and rbd print them:
// an upper-case header, columns separated by three spaces, no borders, numbers
// right-aligned where asked. A value type; not thread-safe.
#pragma once

#include <string>
#include <vector>

namespace blockd::tools {

class Table {
 public:
  enum class Align { kLeft, kRight };

  explicit Table(std::vector<std::string> header, std::vector<Align> align = {});

  void add_row(std::vector<std::string> cells);
  bool empty() const { return rows_.empty(); }
  // Every line ends with '\n'; trailing spaces are trimmed. Widths count UTF-8 code
  // points, so a description with accents does not skew its column.
  std::string render() const;

 private:
  std::vector<std::string> header_;
  std::vector<Align> align_;
  std::vector<std::vector<std::string>> rows_;
};

// Display width of UTF-8 text, in code points.
std::size_t display_width(const std::string& text);

}  // namespace blockd::tools
