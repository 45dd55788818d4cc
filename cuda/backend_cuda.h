// The CUDA implementation of the backend op table (model/backend.h).
// Params, grads and activations are float in device memory (real_size 4); `precision`
// only changes the matmuls: "fp32" (full fp32), "tf32" (tensor cores, tf32 operands)
// or "bf16" (bf16 operands, fp32 accumulation). One stream carries every op.
#ifndef SWQ_BACKEND_CUDA_H
#define SWQ_BACKEND_CUDA_H
#include <stddef.h>
#include "model/backend.h"
#ifdef __cplusplus
extern "C" {
#endif

// NULL with a one-line message in err when there is no usable device
// ("run.device = cuda: no CUDA device found", compute capability < 8.0, bad precision).
swq_backend *swq_backend_cuda(int device_ordinal, const char *precision, char *err, size_t errlen);
// Frees the handles, stream and scratch of a backend made by swq_backend_cuda (not its
// buffers: free those with be->free first).
void swq_backend_cuda_destroy(swq_backend *be);
// 1 if be was made by swq_backend_cuda.
int swq_backend_is_cuda(const swq_backend *be);

#ifdef __cplusplus
}
#endif
#endif
