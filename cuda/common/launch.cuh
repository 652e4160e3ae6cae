// Kernel launches through one function, so that no kernel file spells `<<<>>>` (which a host
// compiler cannot parse) and every launch is checked: a bad configuration or an earlier
// asynchronous fault surfaces as a GpuError naming the kernel, not as a wrong result later.
#pragma once

#include <string>
#include <utility>

#include "common/cuda_lang.cuh"
#include "common/device.h"

namespace fineserve::gpu {

template <class... Params, class... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t smem_bytes, Stream stream,
            Args&&... args) {
#if FS_SIMT
  (void)stream;
  simt::launch(grid, block, smem_bytes, name, [&] { kernel(static_cast<Params>(args)...); });
#else
  if (smem_bytes > 48 * 1024) {
    check(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                               static_cast<int>(smem_bytes)),
          name);
  }
  kernel<<<grid, block, smem_bytes, static_cast<cudaStream_t>(stream)>>>(static_cast<Params>(args)...);
  check(cudaGetLastError(), name);
#endif
}

}  // namespace fineserve::gpu
