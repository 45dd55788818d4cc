// NCCL all-reduce of CUDA backend buffers: one communicator over the MPI world (unique id
// from rank 0 by MPI_Bcast), ncclAllReduce(ncclFloat, ncclSum) in place on the backend's
// stream. Compiled only with SWQ_HAVE_CUDA and SWQ_HAVE_NCCL.
#if defined(SWQ_HAVE_CUDA) && defined(SWQ_HAVE_NCCL) && defined(SWQ_HAVE_MPI)
#include "dist.h"
#include "../cuda/backend_cuda.h"
#include <cuda_runtime_api.h>
#include <nccl.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>

// The backend's stream when cuda/ exports it (requested: swq_backend_cuda_stream); without it
// the backend is synchronised and NCCL runs on a stream of its own.
extern void *swq_backend_cuda_stream(swq_backend *be) __attribute__((weak));

typedef struct {
    ncclComm_t comm;
    cudaStream_t own;
} nccl_state;

#define CU_TRY(call)                                                                          \
    do {                                                                                      \
        cudaError_t e_ = (call);                                                              \
        if (e_ != cudaSuccess) {                                                              \
            snprintf(err, errlen, "rank %d: %s: %s", d->rank, #call, cudaGetErrorString(e_)); \
            return -1;                                                                        \
        }                                                                                     \
    } while (0)
#define NCCL_TRY(call)                                                                         \
    do {                                                                                       \
        ncclResult_t r_ = (call);                                                              \
        if (r_ != ncclSuccess) {                                                               \
            snprintf(err, errlen, "rank %d: %s: %s", d->rank, #call, ncclGetErrorString(r_));  \
            return -1;                                                                         \
        }                                                                                      \
    } while (0)

static int nccl_setup(swq_dist *d, char *err, size_t errlen) {
    dist_world *w = (dist_world *)d->ctx;
    if (w->nccl) return 0;
    ncclUniqueId id;
    if (d->rank == 0) NCCL_TRY(ncclGetUniqueId(&id));
    int rc = MPI_Bcast(&id, (int)sizeof(id), MPI_BYTE, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) { snprintf(err, errlen, "rank %d: MPI_Bcast of the NCCL id failed (%d)", d->rank, rc); return -1; }
    nccl_state *st = calloc(1, sizeof(*st));
    if (!st) { snprintf(err, errlen, "out of memory"); return -1; }
    w->nccl = st;
    NCCL_TRY(ncclCommInitRank(&st->comm, d->world, id, d->rank));
    CU_TRY(cudaStreamCreateWithFlags(&st->own, cudaStreamNonBlocking));
    return 0;
}

int dist_nccl_allreduce(swq_dist *d, swq_backend *be, void *buf, size_t n, char *err, size_t errlen) {
    if (nccl_setup(d, err, errlen)) return -1;
    nccl_state *st = ((dist_world *)d->ctx)->nccl;
    if (be->real_size != 4) { snprintf(err, errlen, "NCCL all-reduce: expected float buffers, got %zu-byte reals", be->real_size); return -1; }
    if (swq_backend_cuda_stream) {
        // stream-ordered: the optimizer's kernels queue behind the reduction, no host sync
        cudaStream_t s = (cudaStream_t)swq_backend_cuda_stream(be);
        NCCL_TRY(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, st->comm, s));
        return 0;
    }
    be->synchronize(be);
    NCCL_TRY(ncclAllReduce(buf, buf, n, ncclFloat, ncclSum, st->comm, st->own));
    CU_TRY(cudaStreamSynchronize(st->own));
    return 0;
}

void dist_nccl_destroy(swq_dist *d) {
    if (!d || !d->ctx) return;
    dist_world *w = (dist_world *)d->ctx;
    nccl_state *st = w->nccl;
    if (!st) return;
    if (st->comm) ncclCommDestroy(st->comm);
    if (st->own) cudaStreamDestroy(st->own);
    free(st);
    w->nccl = NULL;
}
#else
typedef int dist_nccl_unused;   // ISO C: a translation unit must declare something
#endif
