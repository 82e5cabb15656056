// SPDX-License-Identifier: Apache-2.0
// The closing tables of `gdp_app run`, `bench` and `verify`, and the progress lines of long
// runs: printed by rank 0 only.
#pragma once

#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace gdp::app {

/// Columns of text, right-aligned under their headers.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : rows_{std::move(headers)} {}
  void add_row(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void print(std::FILE* out) const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

/// `value` with `decimals` digits after the point.
std::string fixed(double value, int decimals);
/// `value` with an SI prefix and 3 significant digits: "1.23 M".
std::string si(double value);
/// max / mean of `values` (1 when they are all zero): 1 is perfect balance.
double load_imbalance(const std::vector<double>& values);

/// Progress lines for long runs: prints a message (on rank 0) when at least `interval`
/// seconds have passed since the start or since the last line, so short runs print none.
class Progress {
 public:
  Progress(bool enabled, double interval_seconds = 1.0)
      : enabled_(enabled), interval_(interval_seconds), last_(std::chrono::steady_clock::now()) {}
  void operator()(const std::string& message);

 private:
  bool enabled_;
  double interval_;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now(), last_;
};

}  // namespace gdp::app
