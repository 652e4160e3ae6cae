{
  "includes": ["cpp/sources.gypi"],
  "target_defaults": {
    "include_dirs": ["cpp/core"],
    "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
    "cflags_cc": ["-std=c++17", "-fexceptions", "-O3", "-Wall", "-Wextra", "-Wno-unused-parameter"],
    "cflags": ["-fPIC"]
  },
  "targets": [
    {
      "target_name": "fineserve_simd_avx2",
      "type": "static_library",
      "sources": ["<@(fineserve_avx2_sources)"],
      "cflags_cc": ["-mavx2", "-mfma", "-mf16c"]
    },
    {
      "target_name": "fineserve_simd_avx512",
      "type": "static_library",
      "sources": ["<@(fineserve_avx512_sources)"],
      "cflags_cc": ["-Wno-uninitialized", "-Wno-maybe-uninitialized",
                    "-mavx512f", "-mavx512bw", "-mavx512vl", "-mavx512dq", "-mfma", "-mf16c"]
    },
    {
      "target_name": "fineserve",
      "comment": "node-gyp builds the CPU addon only; the CUDA variant is built with cmake-js.",
      "dependencies": ["fineserve_simd_avx2", "fineserve_simd_avx512"],
      "sources": [
        "<@(fineserve_core_sources)",
        "<@(fineserve_no_cuda_sources)",
        "<@(fineserve_addon_sources)"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_CPP_EXCEPTIONS",
        "NODE_ADDON_API_DISABLE_DEPRECATED",
        "FINESERVE_HAVE_AVX2",
        "FINESERVE_HAVE_AVX512"
      ],
      "cflags_cc": ["-fvisibility=hidden"]
    }
  ]
}
