// SPDX-License-Identifier: Apache-2.0
#include "exact_conversion.hpp"

#include "common/gdp_asserts.hpp"

#include <cmath>
#include <cstring>
#include <iomanip>
#include <limits>
#include <sstream>
#include <type_traits>

namespace gdp::io {

namespace {

template <class T>
T load(const std::byte* source, std::size_t i) {
  T value;
  std::memcpy(&value, source + i * sizeof(T), sizeof(T));
  return value;
}

/// Element i of a float dtype, exactly, as a double.
double load_float(DType from, const std::byte* source, std::size_t i) {
  switch (from) {
    case DType::F64: return load<double>(source, i);
    case DType::F32: return load<float>(source, i);
    case DType::BF16: return double(float(bfloat16::from_bits(load<std::uint16_t>(source, i))));
    default: return double(float(float16::from_bits(load<std::uint16_t>(source, i))));
  }
}

std::string exact_text(double value) {
  std::ostringstream out;
  out << std::setprecision(std::numeric_limits<double>::max_digits10) << value;
  return out.str();
}

}  // namespace

template <class Target>
void convert_exactly(const std::string& path, const std::string& tensor, DType from,
                     const std::byte* source, std::size_t count, Target* destination) {
  if constexpr (std::is_integral<Target>::value) {
    GDP_EXPECT(from == DType::I32 || from == DType::I64, path, "tensor \"", tensor,
               "\": expected an integer dtype (I32, I64), got ", dtype_name(from));
    for (std::size_t i = 0; i < count; ++i)
      destination[i] = from == DType::I32 ? load<std::int32_t>(source, i) : load<std::int64_t>(source, i);
  } else {
    GDP_EXPECT(from == DType::F64 || from == DType::F32 || from == DType::BF16 || from == DType::F16,
               path, "tensor \"", tensor, "\": expected a float dtype (F64, F32, BF16, F16), got ",
               dtype_name(from));
    for (std::size_t i = 0; i < count; ++i) {
      const double value = load_float(from, source, i);
      destination[i] = Target(value);
      GDP_EXPECT(double(destination[i]) == value || std::isnan(value), path, "tensor \"", tensor,
                 "\": ", dtype_name(from), " value ", exact_text(value),
                 " is not exactly representable in ", storage_name<Target>(),
                 ", the type gdp computes in for this input; refusing to round it (store \"",
                 tensor, "\" as F32, or q, k, v and beta as F64)");
    }
  }
}

template void convert_exactly<double>(const std::string&, const std::string&, DType,
                                      const std::byte*, std::size_t, double*);
template void convert_exactly<float>(const std::string&, const std::string&, DType,
                                     const std::byte*, std::size_t, float*);
template void convert_exactly<std::int64_t>(const std::string&, const std::string&, DType,
                                            const std::byte*, std::size_t, std::int64_t*);

}  // namespace gdp::io
