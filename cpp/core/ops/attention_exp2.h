// 2^x for the attention softmax (x <= 0 there): x = n + f with n = round(x) and |f| <= 1/2,
// 2^f by its Taylor series to degree 7 (truncation under 6e-9 relative, so the result is within
// about 1 ulp of Horner's rounding), times 2^n built in the exponent bits. Inputs below kMin give
// exactly 0 (the weights they stand for are below 2^-126 of the row's largest), -inf included.
// Every level evaluates these same steps (the AVX2 lanes with fused multiply-adds).
#pragma once

namespace fineserve::ops::exp2_poly {

constexpr float kMin = -126.0f, kMax = 127.0f;
// ln(2)^k / k!
constexpr float kC[8] = {1.0f,
                         0.6931471805599453f,
                         0.2402265069591007f,
                         0.055504108664821576f,
                         0.009618129107628477f,
                         0.0013333558146428441f,
                         0.00015403530393381606f,
                         1.5252733804059838e-05f};

}  // namespace fineserve::ops::exp2_poly
