// SPDX-License-Identifier: Apache-2.0
/// \file storage_types.hpp
/// \brief Element types gdp stores tensors in, and the type it accumulates in.
///
/// gdp accepts q, k, v, beta and o in four storage types: double, float, and two 16-bit
/// types, `gdp::bfloat16` and `gdp::float16`. Every 16-bit value is widened to float before
/// any arithmetic, and results are rounded back to 16 bits (round to nearest, ties to even)
/// only when written to `o`. `gdp::accumulator_t<Scalar>` names the type used for all
/// arithmetic, for the gates `g`, and for the states `h0` / `ht`: double for double, float
/// otherwise.
///
/// The 16-bit types are plain bit containers with explicit conversions so that they behave
/// identically on every Kokkos execution space and every Kokkos version (Kokkos 3.4 has no
/// bfloat16 and its half type differs between backends).
#pragma once

#include <Kokkos_Macros.hpp>

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace gdp {

namespace detail {
KOKKOS_INLINE_FUNCTION std::uint32_t float_bits(float x) {
  std::uint32_t bits;
  memcpy(&bits, &x, sizeof bits);
  return bits;
}
KOKKOS_INLINE_FUNCTION float bits_float(std::uint32_t bits) {
  float x;
  memcpy(&x, &bits, sizeof x);
  return x;
}
}  // namespace detail

/// bfloat16: 1 sign, 8 exponent, 7 mantissa bits (the upper half of an IEEE float).
struct bfloat16 {
  std::uint16_t bits = 0;  ///< The raw bits: sign, exponent, mantissa.

  bfloat16() = default;
  /// The nearest bfloat16 to `x` (ties to even); a NaN stays a NaN.
  KOKKOS_INLINE_FUNCTION explicit bfloat16(float x) : bits(round_from_float(x)) {}
  /// The value as a float (exact: every value of the type is a float).
  KOKKOS_INLINE_FUNCTION explicit operator float() const {
    return detail::bits_float(std::uint32_t(bits) << 16);
  }
  /// The bfloat16 whose raw bits are `b`.
  KOKKOS_INLINE_FUNCTION static bfloat16 from_bits(std::uint16_t b) {
    bfloat16 r;
    r.bits = b;
    return r;
  }

 private:
  KOKKOS_INLINE_FUNCTION static std::uint16_t round_from_float(float x) {
    const std::uint32_t u = detail::float_bits(x);
    if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0)
      return std::uint16_t((u >> 16) | 0x0040u);  // keep NaN a NaN (quiet it)
    const std::uint32_t rounding = 0x7fffu + ((u >> 16) & 1u);
    return std::uint16_t((u + rounding) >> 16);
  }
};

/// IEEE binary16: 1 sign, 5 exponent, 10 mantissa bits, with subnormals.
struct float16 {
  std::uint16_t bits = 0;  ///< The raw bits: sign, exponent, mantissa.

  float16() = default;
  /// The nearest binary16 to `x` (ties to even): infinity beyond the largest finite value,
  /// subnormals and zero below the smallest normal; a NaN stays a NaN.
  KOKKOS_INLINE_FUNCTION explicit float16(float x) : bits(round_from_float(x)) {}
  /// The value as a float (exact: every value of the type is a float).
  KOKKOS_INLINE_FUNCTION explicit operator float() const {
    const std::uint32_t sign = std::uint32_t(bits & 0x8000u) << 16;
    const std::uint32_t exponent = (bits >> 10) & 0x1fu;
    const std::uint32_t mantissa = bits & 0x3ffu;
    if (exponent == 0x1fu)  // Inf or NaN
      return detail::bits_float(sign | 0x7f800000u | (mantissa << 13));
    if (exponent != 0)
      return detail::bits_float(sign | ((exponent + 112u) << 23) | (mantissa << 13));
    // Zero or subnormal: mantissa * 2^-24, exact in float.
    const float magnitude = float(mantissa) * 5.9604644775390625e-8f;
    return sign ? -magnitude : magnitude;
  }
  /// The float16 whose raw bits are `b`.
  KOKKOS_INLINE_FUNCTION static float16 from_bits(std::uint16_t b) {
    float16 r;
    r.bits = b;
    return r;
  }

 private:
  KOKKOS_INLINE_FUNCTION static std::uint16_t round_from_float(float x) {
    const std::uint32_t u = detail::float_bits(x);
    const std::uint16_t sign = std::uint16_t((u >> 16) & 0x8000u);
    const std::uint32_t magnitude = u & 0x7fffffffu;
    if (magnitude >= 0x7f800000u)  // Inf stays Inf, NaN stays a (quiet) NaN
      return std::uint16_t(sign | 0x7c00u | (magnitude > 0x7f800000u ? 0x200u : 0u));
    if (magnitude >= 0x477ff000u)  // rounds to >= 65520: overflow to Inf
      return std::uint16_t(sign | 0x7c00u);
    if (magnitude < 0x38800000u) {  // below 2^-14: subnormal or zero in binary16
      if (magnitude < 0x33000000u) return sign;  // below half of the smallest subnormal
      const std::uint32_t exponent = magnitude >> 23;
      const std::uint32_t mantissa = (magnitude & 0x7fffffu) | 0x800000u;
      const std::uint32_t shift = 126u - exponent;  // 14..24
      std::uint32_t result = mantissa >> shift;
      const std::uint32_t rest = mantissa & ((1u << shift) - 1u);
      const std::uint32_t half = 1u << (shift - 1u);
      if (rest > half || (rest == half && (result & 1u))) ++result;
      return std::uint16_t(sign | result);
    }
    // Normal: rebias the exponent (127 -> 15) and round the 13 dropped bits to even.
    std::uint32_t result = magnitude - 0x38000000u;
    result += 0xfffu + ((result >> 13) & 1u);
    return std::uint16_t(sign | (result >> 13));
  }
};

/// The type gdp computes in for a storage type: double for double, float for the rest.
template <class Scalar>
struct accumulator {
  static_assert(std::is_same<Scalar, double>::value || std::is_same<Scalar, float>::value ||
                    std::is_same<Scalar, bfloat16>::value || std::is_same<Scalar, float16>::value,
                "gdp storage types are double, float, gdp::bfloat16 and gdp::float16");
  /// double for double, float for the other storage types.
  using type = std::conditional_t<std::is_same<Scalar, double>::value, double, float>;
};
/// The accumulation type of a storage type: `accumulator<Scalar>::type`.
template <class Scalar>
using accumulator_t = typename accumulator<Scalar>::type;

/// Widen a stored value to its accumulation type.
template <class Scalar>
KOKKOS_INLINE_FUNCTION accumulator_t<Scalar> widen(Scalar x) {
  return static_cast<accumulator_t<Scalar>>(x);
}

/// Round an accumulated value to a storage type (ties to even for the 16-bit types).
template <class Scalar, class Accumulator>
KOKKOS_INLINE_FUNCTION Scalar narrow(Accumulator x) {
  return Scalar(static_cast<accumulator_t<Scalar>>(x));
}

/// Short lowercase name of a storage type ("float64", "float32", "bfloat16", "float16").
template <class Scalar>
constexpr const char* storage_name() {
  return std::is_same<Scalar, double>::value  ? "float64"
         : std::is_same<Scalar, float>::value ? "float32"
         : std::is_same<Scalar, bfloat16>::value ? "bfloat16"
                                                 : "float16";
}

}  // namespace gdp
