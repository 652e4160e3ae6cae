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
      "cpp/core/kv/kv_codec.cc",
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
      "cpp/core/quant/weight_format.cc",
      "cpp/core/quant/weight_traits.cc",
      "cpp/core/quant/quantize.cc",
      "cpp/core/quant/dequantize.cc",
      "cpp/core/quant/qdot.cc",
      "cpp/core/model/calibration.cc",
      "cpp/core/model/quantize_model.cc",
      "cpp/core/model/channel_scales.cc",
      "cpp/core/model/gguf_quantize.cc",
      "cpp/core/engine/sampler.cc",
      "cpp/core/engine/thread_pool.cc",
      "cpp/core/engine/llama_forward.cc",
      "cpp/core/engine/step_plan.cc",
      "cpp/core/engine/kv_binding.cc",
      "cpp/core/engine/cpu_executor.cc",
      "cpp/core/engine/perplexity.cc",
      "cpp/core/ops/linear.cc",
      "cpp/core/ops/norm.cc",
      "cpp/core/ops/rope.cc",
      "cpp/core/ops/attention.cc"
    ],
    "fineserve_avx2_sources": [
      "cpp/core/simd/kernels_avx2.cc",
      "cpp/core/quant/qdot_avx2.cc"
    ],
    "fineserve_avx512_sources": [
      "cpp/core/simd/kernels_avx512.cc",
      "cpp/core/quant/qdot_avx512.cc"
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
      "cpp/addon/thread_pool.cc",
      "cpp/addon/executor.cc",
      "cpp/addon/perplexity.cc",
      "cpp/addon/quantize.cc"
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
      "test/cpp/test_shared_thread_pool.cc",
      "test/cpp/test_forward_reference.cc",
      "test/cpp/test_quant_formats.cc",
      "test/cpp/test_linear_quant.cc",
      "test/cpp/test_attention_formats.cc",
      "test/cpp/test_perplexity.cc",
      "test/cpp/test_weight_traits.cc",
      "test/cpp/test_quantize_model.cc",
      "test/cpp/test_gguf_quantize.cc",
      "test/cpp/test_forward_quant_reference.cc"
    ],
    "fineserve_gpu_kernel_sources": [
      "cuda/kernels/linear.cu",
      "cuda/kernels/elementwise.cu",
      "cuda/kernels/kv_cache.cu",
      "cuda/kernels/paged_attention.cu",
      "cuda/kernels/synthetic.cu",
      "cuda/kernels/sampling.cu"
    ],
    "fineserve_gpu_host_sources": [
      "cuda/engine/device_weights.cc",
      "cuda/engine/synthetic_weights.cc",
      "cuda/engine/cuda_forward.cc",
      "cuda/engine/cuda_executor.cc"
    ],
    "fineserve_gpu_simt_sources": [
      "cuda/simt/simt.cc",
      "cuda/simt/device_simt.cc"
    ],
    "fineserve_gpu_cuda_sources": [
      "cuda/common/device_cuda.cu"
    ],
    "fineserve_gpu_test_sources": [
      "test/cpp/main.cc",
      "test/cuda/test_linear.cc",
      "test/cuda/test_elementwise.cc",
      "test/cuda/test_paged_attention.cc",
      "test/cuda/test_cuda_executor.cc",
      "test/cuda/test_sampling.cc",
      "test/cuda/test_synthetic.cc"
    ],
    "fineserve_gpu_simt_test_sources": [
      "test/cuda/test_simt.cc"
    ]
  }
}
