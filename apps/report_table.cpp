// SPDX-License-Identifier: Apache-2.0
#include "report_table.hpp"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace gdp::app {

void Table::print(std::FILE* out) const {
  std::vector<std::size_t> width;
  for (const auto& row : rows_)
    for (std::size_t c = 0; c < row.size(); ++c) {
      if (width.size() <= c) width.push_back(0);
      width[c] = std::max(width[c], row[c].size());
    }
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t c = 0; c < row.size(); ++c)
      line += std::string(width[c] - row[c].size() + (c ? 2 : 0), ' ') + row[c];
    std::fprintf(out, "%s\n", line.c_str());
  }
  std::fflush(out);
}

std::string fixed(double value, int decimals) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", decimals, value);
  return text;
}

std::string si(double value) {
  static const char* prefixes[] = {"", " k", " M", " G", " T", " P"};
  int p = 0;
  while (std::fabs(value) >= 999.5 && p < 5) {
    value /= 1000;
    ++p;
  }
  char text[64];
  std::snprintf(text, sizeof text, "%.3g%s", value, prefixes[p]);
  return text;
}

double load_imbalance(const std::vector<double>& values) {
  if (values.empty()) return 1;
  const double mean = std::accumulate(values.begin(), values.end(), 0.0) / double(values.size());
  return mean > 0 ? *std::max_element(values.begin(), values.end()) / mean : 1;
}

void Progress::operator()(const std::string& message) {
  using namespace std::chrono;
  const auto now = steady_clock::now();
  if (!enabled_ || duration<double>(now - last_).count() < interval_) return;
  last_ = now;
  std::printf("[%7.1f s] %s\n", duration<double>(now - start_).count(), message.c_str());
  std::fflush(stdout);
}

}  // namespace gdp::app
