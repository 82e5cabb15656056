// SPDX-License-Identifier: Apache-2.0
// Converting tensor elements read from a file to the type gdp computes with, without ever
// changing a value: g and h0 may be stored in any float dtype, but they are used in the
// accumulation type, and a value that type cannot hold exactly is refused rather than
// rounded (a silently altered gate or state would change results without notice).
#pragma once

#include <gdp/safetensors.hpp>

#include <cstddef>
#include <cstdint>
#include <string>

namespace gdp::io {

/// Converts `count` elements of dtype `from` at `source` to `Target` (double, float or
/// std::int64_t) at `destination`. Float dtypes convert to float targets and I32/I64 to
/// std::int64_t.
/// \throws gdp::InvalidArgument naming `path`, `tensor` and the first value that `Target`
/// cannot represent exactly (NaN counts as representable), or an unsupported pair of types.
template <class Target>
void convert_exactly(const std::string& path, const std::string& tensor, DType from,
                     const std::byte* source, std::size_t count, Target* destination);

extern template void convert_exactly<double>(const std::string&, const std::string&, DType,
                                             const std::byte*, std::size_t, double*);
extern template void convert_exactly<float>(const std::string&, const std::string&, DType,
                                            const std::byte*, std::size_t, float*);
extern template void convert_exactly<std::int64_t>(const std::string&, const std::string&, DType,
                                                   const std::byte*, std::size_t, std::int64_t*);

}  // namespace gdp::io
