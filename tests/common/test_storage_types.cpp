// SPDX-License-Identifier: Apache-2.0
#include <gdp/storage_types.hpp>

#include <gtest/gtest.h>

#include <cmath>
#include <limits>

namespace gdp {
namespace {

TEST(StorageTypes, Bfloat16RoundsToNearestEven) {
  EXPECT_EQ(bfloat16(1.0f).bits, 0x3f80);
  EXPECT_EQ(float(bfloat16(1.0f)), 1.0f);
  // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: ties go to the even mantissa (1).
  EXPECT_EQ(float(bfloat16(1.0f + 0.00390625f)), 1.0f);
  // 1 + 3 * 2^-8 is halfway between 1 + 2^-7 and 1 + 2^-6: ties go to 1 + 2^-6.
  EXPECT_EQ(float(bfloat16(1.0f + 3 * 0.00390625f)), 1.015625f);
  EXPECT_EQ(float(bfloat16(-2.5f)), -2.5f);
  EXPECT_TRUE(std::isnan(float(bfloat16(std::numeric_limits<float>::quiet_NaN()))));
  EXPECT_TRUE(std::isinf(float(bfloat16(std::numeric_limits<float>::infinity()))));
}

TEST(StorageTypes, Float16RoundTripsEveryFiniteValue) {
  for (unsigned bits = 0; bits < 0x10000u; ++bits) {
    const float16 h = float16::from_bits(std::uint16_t(bits));
    const float x = float(h);
    if (std::isnan(x)) {
      EXPECT_TRUE(std::isnan(float(float16(x))));
      continue;
    }
    ASSERT_EQ(float16(x).bits, h.bits) << "bits " << bits << " value " << x;
  }
}

TEST(StorageTypes, Float16Rounding) {
  EXPECT_EQ(float(float16(65504.0f)), 65504.0f);
  EXPECT_TRUE(std::isinf(float(float16(65520.0f))));
  EXPECT_EQ(float(float16(65519.0f)), 65504.0f);
  EXPECT_EQ(float(float16(5.9604644775390625e-8f)), 5.9604644775390625e-8f);  // smallest subnormal
  EXPECT_EQ(float(float16(2.98023223876953125e-8f)), 0.0f);  // half of it: ties to even (0)
  EXPECT_EQ(float(float16(4.5e-8f)), 5.9604644775390625e-8f);
  EXPECT_EQ(float(float16(1.0f + 0.00048828125f)), 1.0f);  // tie between 1 and 1 + 2^-10
  EXPECT_EQ(float(float16(0.1f)), 0.0999755859375f);
}

TEST(StorageTypes, AccumulatorTypes) {
  static_assert(std::is_same<accumulator_t<double>, double>::value);
  static_assert(std::is_same<accumulator_t<float>, float>::value);
  static_assert(std::is_same<accumulator_t<bfloat16>, float>::value);
  static_assert(std::is_same<accumulator_t<float16>, float>::value);
  EXPECT_STREQ(storage_name<bfloat16>(), "bfloat16");
}

}  // namespace
}  // namespace gdp
