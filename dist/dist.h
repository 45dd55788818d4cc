// Multi-process runs: the MPI world (started by mpirun or srun, else one process), the
// data-parallel all-reduce hooks of swq_dist (MPI on CPU, NCCL on CUDA), the start-up check
// that every rank runs the same swq on the same config, and the small messages the sweep
// coordinator exchanges with its workers.
#ifndef SWQ_DIST_H
#define SWQ_DIST_H
#include <stddef.h>
#include <stdint.h>
#include "../launch/run.h"

typedef struct {
    int launched;        // 1 if a launcher (mpirun/srun) started us as one rank of a job
    int mpi;             // 1 if MPI_Init was called (and dist_finalize must be)
    int local_rank, local_size;
    void *nccl;          // dist_nccl state, created on the first CUDA all-reduce
    char launcher[32];   // "mpirun", "srun", "pmi", "none"
} dist_world;

// Detect the launcher from the environment (OMPI_COMM_WORLD_SIZE, PMIX_RANK, PMI_SIZE,
// SLURM_STEP_ID with SLURM_STEP_NUM_TASKS > 1); under one, MPI_Init and fill d (rank, world,
// hooks); otherwise (or with SWQ_NO_MPI=1) stay one process without touching MPI.
// Before any CUDA call it pins this rank to one GPU by its local rank (CUDA_VISIBLE_DEVICES).
int dist_init(int *argc, char ***argv, swq_dist *d, char *err, size_t errlen);
// MPI_Finalize if dist_init started MPI (NCCL communicator destroyed first).
void dist_finalize(swq_dist *d);
// Kill the whole job (MPI_Abort) after an error on one rank; plain exit(code) without MPI.
void dist_abort(swq_dist *d, int code);
// Every rank hashes text and version; rank 0 compares. On a mismatch every rank returns -1
// (rank 0's err names the first rank that differs); 0 when all agree or world == 1.
int dist_check_same(swq_dist *d, const char *what, const char *text, const char *version, char *err, size_t errlen);
// 1 on every rank if any rank passes flag != 0 (a collective; errors count as 1).
int dist_any(swq_dist *d, int flag);
// A collective after a step every rank does (load a config, check a journal): 1 on every rank
// if any failed. The error is printed once ("swq: <err>"): by rank 0 if it failed, else by the
// failing ranks (with their rank).
int dist_fail_any(swq_dist *d, int failed, const char *err);
const dist_world *dist_world_of(const swq_dist *d);

// Point-to-point messages of the sweep coordinator (tags below). Strings include their NUL.
enum { DIST_TAG_REQUEST = 101, DIST_TAG_ASSIGN = 102 };
int dist_send_str(swq_dist *d, int dest, int tag, const char *s, char *err, size_t errlen);
// Non-blocking check for a message with tag from any rank: 1 and *src, *msg (malloc'd) when one
// was received, 0 when none is waiting, -1 on error.
int dist_try_recv_str(swq_dist *d, int tag, int *src, char **msg, char *err, size_t errlen);
int dist_send_int(swq_dist *d, int dest, int tag, int v, char *err, size_t errlen);
int dist_recv_int(swq_dist *d, int src, int tag, int *v, char *err, size_t errlen);

// 64-bit FNV-1a of text then version: what dist_check_same compares.
uint64_t dist_hash_text(const char *text, const char *version);

#if defined(SWQ_HAVE_CUDA) && defined(SWQ_HAVE_NCCL)
// NCCL (dist_nccl.c): communicator over the MPI world, all-reduce of a CUDA backend buffer.
int dist_nccl_allreduce(swq_dist *d, swq_backend *be, void *buf, size_t n, char *err, size_t errlen);
void dist_nccl_destroy(swq_dist *d);
#endif
#endif
