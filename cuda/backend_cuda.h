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
// buffers: free those with be->free first). Also reached through swq_backend_destroy.
void swq_backend_cuda_destroy(swq_backend *be);
// 1 if be was made by swq_backend_cuda.
int swq_backend_is_cuda(const swq_backend *be);
// The backend's CUDA stream (cudaStream_t), for NCCL calls ordered with the backend's work.
void *swq_backend_cuda_stream(swq_backend *be);
// Bytes held through the backend (buffers, bf16 workspaces and caches): now and at peak.
void swq_backend_cuda_mem(swq_backend *be, size_t *cur, size_t *peak);
// What the peak was made of: up to max classes (an allocation's name up to its first '.', and the
// backend's own: bf16 copies, scratch, cuBLAS workspace) with their bytes at the peak; returns
// how many. The names stay valid as long as the backend.
int swq_backend_cuda_mem_at_peak(swq_backend *be, const char **names, size_t *bytes, int max);
// Measured rates of this GPU: a cuBLAS bf16 GEMM of n^3 (bf16 in/out, fp32 accumulation) in
// TFLOP/s, and a device-to-device copy in GB/s counting bytes read and written. -1 on failure.
double swq_backend_cuda_gemm_tflops(swq_backend *be, int n, int reps);
double swq_backend_cuda_copy_gbs(swq_backend *be, size_t bytes, int reps);
// SWQ_CUDA_TIMELINE=1 (no-ops otherwise): clear the per-op GPU times gathered so far; print
// them per step to stderr (by phase, op, GEMM class / conversion / other kernels).
void swq_backend_cuda_timeline_reset(swq_backend *be);
void swq_backend_cuda_timeline_report(swq_backend *be, int steps);
// 1 if attention with this shape runs as fused (flash) kernels (bf16 mode, 64-wide heads):
// att then holds per-row log-sum-exps for the backward, not probabilities.
int swq_backend_cuda_flash_attention(swq_backend *be, int C, int NH);
// Whether the sm_90a (TMA, wgmma) kernels run; on >= 0 sets it (on only where they can), returns
// the previous state (cuda_ops_check compares them with the kernels they replace).
int swq_backend_cuda_wgmma(swq_backend *be, int on);
// CUDA graphs so far: runs recorded, runs replayed (SWQ_CUDA_GRAPHS=0 turns them off).
void swq_backend_cuda_graph_stats(swq_backend *be, long *captures, long *replays);
// "NVIDIA H100 80GB HBM3" etc.
void swq_backend_cuda_device_name(swq_backend *be, char *buf, size_t n);

#ifdef __cplusplus
}
#endif
#endif
