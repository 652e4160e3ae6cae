{
  "variables": {
    "fineserve_core_sources": [
      "cpp/core/cpu_info.cc",
      "cpp/core/simd/dispatch.cc",
      "cpp/core/simd/kernels_baseline.cc",
      "cpp/core/kv/kv_geometry.cc",
      "cpp/core/kv/pool_base.cc",
      "cpp/core/kv/kv_slab.cc",
      "cpp/core/kv/static_pool.cc",
      "cpp/core/kv/unified_pool.cc",
      "cpp/core/kv/paged_pool.cc",
      "cpp/core/kv/pool_factory.cc",
      "cpp/core/kv/pool_batch.cc",
      "cpp/core/kv/kv_arena.cc"
    ],
    "fineserve_avx2_sources": [
      "cpp/core/simd/kernels_avx2.cc"
    ],
    "fineserve_avx512_sources": [
      "cpp/core/simd/kernels_avx512.cc"
    ],
    "fineserve_no_cuda_sources": [
      "cpp/core/cuda_absent.cc"
    ],
    "fineserve_cuda_sources": [
      "cuda/device_query.cu",
      "cuda/kv_arena.cu"
    ],
    "fineserve_addon_sources": [
      "cpp/addon/addon.cc",
      "cpp/addon/devices.cc",
      "cpp/addon/kv_pool.cc"
    ],
    "fineserve_core_test_sources": [
      "test/cpp/main.cc",
      "test/cpp/test_cpu_info.cc",
      "test/cpp/test_simd.cc",
      "test/cpp/test_cuda_report.cc",
      "test/cpp/test_kv_geometry.cc",
      "test/cpp/test_kv_slab.cc",
      "test/cpp/test_kv_baselines.cc",
      "test/cpp/test_kv_properties.cc"
    ]
  }
}
