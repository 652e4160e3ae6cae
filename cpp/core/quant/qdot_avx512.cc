// AVX-512 (F/BW/VL/DQ) quantized row dots: none of their own yet, so every row of
// quant/weight_traits.cc leaves its Avx512 entry null and resolve_kernel falls back to the AVX2
// kernels (an AVX-512 CPU runs them). A kernel written here goes in namespace dot_avx512, is
// declared in row_kernels.h and named in its row's Avx512 column.
#include "quant/qdot.h"
