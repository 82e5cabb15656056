// SPDX-License-Identifier: Apache-2.0
#include "finite_check.hpp"

#include "gdp_asserts.hpp"

#include <cmath>
#include <stdexcept>

namespace gdp::detail {

namespace {

/// How a tensor's axes are named and which of them a sub-problem's origin shifts.
enum class AxisKind { tokens, positions, states };

struct TensorAxes {
  AxisKind kind;
  std::vector<const char*> labels;
};

TensorAxes axes_of(const std::string& name) {
  if (name == "q" || name == "dq") return {AxisKind::tokens, {"b", "t", "h", "k"}};
  if (name == "o" || name == "do") return {AxisKind::tokens, {"b", "t", "h", "v"}};
  if (name == "g" || name == "dg") return {AxisKind::tokens, {"b", "t", "h"}};
  if (name == "k" || name == "dk") return {AxisKind::positions, {"b", "p", "h", "k"}};
  if (name == "v" || name == "dv") return {AxisKind::positions, {"b", "p", "h", "v"}};
  if (name == "beta" || name == "dbeta") return {AxisKind::positions, {"b", "p", "h"}};
  return {AxisKind::states, {"s", "h", "k", "v"}};  // h0, ht, dht, dh0
}

std::string value_name(double value) {
  if (std::isnan(value)) return "nan";
  return value > 0 ? "inf" : "-inf";
}

}  // namespace

std::string describe_non_finite(const std::string& name, const std::vector<std::int64_t>& dims,
                                const NonFiniteElement& element, const IndexOrigin& origin) {
  const TensorAxes axes = axes_of(name);
  std::vector<std::int64_t> index(dims.size());
  std::int64_t rest = element.index;
  for (std::size_t r = dims.size(); r-- > 0;) {
    index[r] = dims[r] > 0 ? rest % dims[r] : 0;
    rest = dims[r] > 0 ? rest / dims[r] : 0;
  }
  if (axes.kind == AxisKind::states) {
    index[0] += origin.sequence;
  } else {
    index[0] += origin.row;
    index[1] += axes.kind == AxisKind::positions ? origin.token * origin.num_householder
                                                 : origin.token;
  }
  const bool qk = name == "q" || name == "k" || name == "dq" || name == "dk";
  index[1 + (axes.kind == AxisKind::states ? 0 : 1)] += qk ? origin.qk_head : origin.head;
  std::string labels = "[";
  for (std::size_t r = 0; r < index.size(); ++r)
    labels += concat(r ? ", " : "", r < axes.labels.size() ? axes.labels[r] : "?");
  return concat(value_name(element.value), " at ", labels, "] = ", format_shape(index));
}

void throw_non_finite_input(const std::string& name, const std::string& found) {
  throw_invalid_argument(__FILE__, __LINE__, name,
                         concat("expected finite values, got ", found,
                                " (the first in row-major order; "
                                "ForwardOptions::allow_non_finite lets non-finite inputs through)"));
}

void throw_non_finite_output(const std::string& name, const std::string& found) {
  throw std::runtime_error(concat("gdp: ", name, ": non-finite output: ", found,
                                  " (the first in row-major order)"));
}

}  // namespace gdp::detail
