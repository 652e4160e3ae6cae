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
      "cpp/core/kv/kv_arena.cc",
      "cpp/core/model/tensor.cc",
      "cpp/core/model/model_error.cc",
      "cpp/core/model/json.cc",
      "cpp/core/model/mapped_file.cc",
      "cpp/core/model/gguf.cc",
      "cpp/core/model/safetensors.cc",
      "cpp/core/model/config_gguf.cc",
      "cpp/core/model/config_hf.cc",
      "cpp/core/model/loader.cc",
      "cpp/core/model/ggml_type.cc",
      "cpp/core/model/config_check.cc",
      "cpp/core/model/assemble_weights.cc",
      "cpp/core/model/weight_scan.cc",
      "cpp/core/model/gguf_metadata.cc",
      "cpp/core/model/loader_gguf.cc",
      "cpp/core/model/loader_hf.cc",
      "cpp/core/model/tensor_stream.cc",
      "cpp/core/model/gguf_writer.cc",
      "cpp/core/model/safetensors_writer.cc",
      "cpp/core/model/generate.cc",
      "cpp/core/model/generate_files.cc",
      "cpp/core/engine/sampler.cc",
      "cpp/core/engine/thread_pool.cc",
      "cpp/core/engine/llama_forward.cc",
      "cpp/core/engine/cpu_executor.cc",
      "cpp/core/ops/linear.cc",
      "cpp/core/ops/norm.cc",
      "cpp/core/ops/rope.cc",
      "cpp/core/ops/attention.cc"
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
      "cpp/addon/kv_pool.cc",
      "cpp/addon/generate.cc",
      "cpp/addon/model.cc",
      "cpp/addon/executor.cc"
    ],
    "fineserve_core_test_sources": [
      "test/cpp/main.cc",
      "test/cpp/test_cpu_info.cc",
      "test/cpp/test_simd.cc",
      "test/cpp/test_cuda_report.cc",
      "test/cpp/test_kv_geometry.cc",
      "test/cpp/test_kv_slab.cc",
      "test/cpp/test_kv_baselines.cc",
      "test/cpp/test_kv_properties.cc",
      "test/cpp/test_model_loader.cc",
      "test/cpp/test_model_parsers.cc",
      "test/cpp/test_sampler.cc",
      "test/cpp/test_generate.cc",
      "test/cpp/test_forward_golden.cc",
      "test/cpp/test_forward_reference.cc"
    ]
  }
}
