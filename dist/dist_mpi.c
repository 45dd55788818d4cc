// swq_dist over MPI: launcher detection, MPI_Allreduce hooks (NCCL for CUDA buffers),
// start-up config check, coordinator messages. Every MPI call is checked (MPI_ERRORS_RETURN).
#include "dist.h"
#include "../checkpoints/ckpt_file.h"
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <limits.h>
#ifdef SWQ_HAVE_MPI
#include <mpi.h>
#endif
#ifdef SWQ_HAVE_CUDA
#include "../cuda/backend_cuda.h"
#endif

static dist_world g_world;

const dist_world *dist_world_of(const swq_dist *d) { return d && d->ctx ? (const dist_world *)d->ctx : &g_world; }

uint64_t dist_hash_text(const char *text, const char *version) {
    uint64_t h = swq_fnv1a64(text ? text : "", text ? strlen(text) : 0, SWQ_FNV_INIT);
    h = swq_fnv1a64("\n", 1, h);
    return swq_fnv1a64(version ? version : "", version ? strlen(version) : 0, h);
}

static int env_int(const char *name, int dflt) {
    const char *v = getenv(name);
    return v && *v ? atoi(v) : dflt;
}

// Which launcher started us, and our local rank on this node.
static void detect(dist_world *w) {
    snprintf(w->launcher, sizeof(w->launcher), "none");
    w->local_rank = 0;
    w->local_size = 1;
    const char *no = getenv("SWQ_NO_MPI");
    if (no && *no && strcmp(no, "0")) return;
    if (getenv("OMPI_COMM_WORLD_SIZE")) {
        snprintf(w->launcher, sizeof(w->launcher), "mpirun");
        w->launched = 1;
        w->local_rank = env_int("OMPI_COMM_WORLD_LOCAL_RANK", 0);
        w->local_size = env_int("OMPI_COMM_WORLD_LOCAL_SIZE", 1);
    } else if (getenv("SLURM_STEP_ID") && env_int("SLURM_STEP_NUM_TASKS", 1) > 1) {
        snprintf(w->launcher, sizeof(w->launcher), "srun");
        w->launched = 1;
        w->local_rank = env_int("SLURM_LOCALID", 0);
        w->local_size = env_int("SLURM_STEP_TASKS_PER_NODE", 1);   // "2(x3)" reads as 2
    } else if (getenv("PMIX_RANK") || getenv("PMI_SIZE")) {
        snprintf(w->launcher, sizeof(w->launcher), "pmi");
        w->launched = 1;
        w->local_rank = env_int("MPI_LOCALRANKID", env_int("PMI_LOCAL_RANK", 0));
        w->local_size = env_int("MPI_LOCALNRANKS", 1);
    }
}

// One GPU per local rank: restrict the CUDA runtime to it before anything initialises CUDA,
// so the backend's device 0 is this rank's GPU.
__attribute__((unused)) static void pin_gpu(const dist_world *w) {
    if (!w->launched) return;
    const char *vis = getenv("CUDA_VISIBLE_DEVICES");
    char pick[64];
    if (vis && *vis) {
        // a launcher (SLURM --gpus-per-task) already gave us one GPU: keep it
        if (!strchr(vis, ',')) return;
        const char *p = vis;
        for (int i = 0; i < w->local_rank && p; i++) {
            p = strchr(p, ',');
            if (p) p++;
        }
        if (!p) return;   // fewer GPUs than local ranks: leave it (the backend reports the clash)
        size_t n = strcspn(p, ",");
        if (n >= sizeof(pick)) return;
        memcpy(pick, p, n);
        pick[n] = 0;
    } else {
        snprintf(pick, sizeof(pick), "%d", w->local_rank);
    }
    setenv("CUDA_VISIBLE_DEVICES", pick, 1);
}

#ifdef SWQ_HAVE_MPI

static int mpi_fail(int rc, const char *what, char *err, size_t errlen) {
    char msg[MPI_MAX_ERROR_STRING] = "";
    int len = 0;
    if (MPI_Error_string(rc, msg, &len) != MPI_SUCCESS) snprintf(msg, sizeof(msg), "error %d", rc);
    int rank = -1;
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    snprintf(err, errlen, "rank %d: %s failed: %s", rank, what, msg);
    return -1;
}
#define MPI_TRY(call, what)                                                  \
    do {                                                                     \
        int rc_ = (call);                                                    \
        if (rc_ != MPI_SUCCESS) return mpi_fail(rc_, what, err, errlen);     \
    } while (0)

static int allreduce_host(void *buf, size_t n, MPI_Datatype t, size_t esz, char *err, size_t errlen) {
    // one MPI call per step unless the buffer exceeds an int count
    for (size_t off = 0; off < n;) {
        size_t c = n - off > (size_t)INT_MAX ? (size_t)INT_MAX : n - off;
        MPI_TRY(MPI_Allreduce(MPI_IN_PLACE, (char *)buf + off * esz, (int)c, t, MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce");
        off += c;
    }
    return 0;
}

static int hook_allreduce_grads(swq_dist *d, swq_backend *be, void *buf, size_t n) {
    char err[512];
    int rc;
#ifdef SWQ_HAVE_CUDA
    if (swq_backend_is_cuda(be)) {
#ifdef SWQ_HAVE_NCCL
        rc = dist_nccl_allreduce(d, be, buf, n, err, sizeof(err));
#else
        // no NCCL: stage through host memory
        float *h = malloc(n * sizeof(float));
        if (!h) { fprintf(stderr, "swq: rank %d: out of memory for the gradient all-reduce\n", d->rank); return -1; }
        be->download(be, h, buf, n);
        rc = allreduce_host(h, n, MPI_FLOAT, sizeof(float), err, sizeof(err));
        if (!rc) be->upload(be, buf, h, n);
        free(h);
#endif
        if (rc) fprintf(stderr, "swq: %s\n", err);
        return rc;
    }
#endif
    if (be->real_size == 4) rc = allreduce_host(buf, n, MPI_FLOAT, 4, err, sizeof(err));
    else rc = allreduce_host(buf, n, MPI_DOUBLE, 8, err, sizeof(err));
    if (rc) fprintf(stderr, "swq: %s\n", err);
    return rc;
}

static int hook_allreduce_f64(swq_dist *d, double *x, int n) {
    char err[512];
    if (allreduce_host(x, (size_t)n, MPI_DOUBLE, sizeof(double), err, sizeof(err))) {
        fprintf(stderr, "swq: %s\n", err);
        return -1;
    }
    return 0;
}

int dist_init(int *argc, char ***argv, swq_dist *d, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->world = 1;
    d->ctx = &g_world;
    detect(&g_world);
    if (!g_world.launched) return 0;
    pin_gpu(&g_world);
    int provided = 0;
    int rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) { snprintf(err, errlen, "MPI_Init failed (error %d) under %s", rc, g_world.launcher); return -1; }
    g_world.mpi = 1;
    MPI_TRY(MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
    MPI_TRY(MPI_Comm_rank(MPI_COMM_WORLD, &d->rank), "MPI_Comm_rank");
    MPI_TRY(MPI_Comm_size(MPI_COMM_WORLD, &d->world), "MPI_Comm_size");
    d->allreduce_grads = hook_allreduce_grads;
    d->allreduce_f64 = hook_allreduce_f64;
    return 0;
}

void dist_finalize(swq_dist *d) {
#if defined(SWQ_HAVE_CUDA) && defined(SWQ_HAVE_NCCL)
    dist_nccl_destroy(d);
#endif
    if (g_world.mpi) {
        int fin = 0;
        if (MPI_Finalized(&fin) == MPI_SUCCESS && !fin) MPI_Finalize();
        g_world.mpi = 0;
    }
}

void dist_abort(swq_dist *d, int code) {
    fflush(stdout);
    fflush(stderr);
    if (g_world.mpi && d && d->world > 1) MPI_Abort(MPI_COMM_WORLD, code);
    dist_finalize(d);
    exit(code);
}

int dist_check_same(swq_dist *d, const char *what, const char *text, const char *version, char *err, size_t errlen) {
    if (!g_world.mpi || d->world <= 1) return 0;
    unsigned long long h = dist_hash_text(text, version);
    unsigned long long *all = d->rank == 0 ? malloc(sizeof(*all) * (size_t)d->world) : NULL;
    if (d->rank == 0 && !all) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = MPI_Gather(&h, 1, MPI_UNSIGNED_LONG_LONG, all, 1, MPI_UNSIGNED_LONG_LONG, 0, MPI_COMM_WORLD);
    if (rc != MPI_SUCCESS) { free(all); return mpi_fail(rc, "MPI_Gather", err, errlen); }
    int bad = -1;
    unsigned long long other = h;
    if (d->rank == 0)
        for (int r = 1; r < d->world && bad < 0; r++)
            if (all[r] != h) { bad = r; other = all[r]; }
    free(all);
    MPI_TRY(MPI_Bcast(&bad, 1, MPI_INT, 0, MPI_COMM_WORLD), "MPI_Bcast");
    if (bad < 0) return 0;
    if (d->rank == 0)
        snprintf(err, errlen, "rank %d runs a different %s or swq version than rank 0 (hash %016llx vs %016llx); "
                 "every rank must see the same files and binary", bad, what, other, h);
    else
        snprintf(err, errlen, "rank %d: %s differs between ranks (reported by rank 0)", d->rank, what);
    return -1;
}

int dist_any(swq_dist *d, int flag) {
    if (!g_world.mpi || d->world <= 1) return flag != 0;
    int v = flag != 0, out = 1;
    if (MPI_Allreduce(&v, &out, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) return 1;
    return out;
}

int dist_fail_any(swq_dist *d, int failed, const char *err) {
    if (!g_world.mpi || d->world <= 1) {
        if (failed) fprintf(stderr, "swq: %s\n", err);
        return failed != 0;
    }
    int v[2] = { failed != 0, d->rank == 0 && failed }, out[2] = { 1, 0 };
    if (MPI_Allreduce(v, out, 2, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS) out[0] = 1;
    if (failed && (d->rank == 0 || !out[1])) {
        if (d->rank == 0) fprintf(stderr, "swq: %s\n", err);
        else fprintf(stderr, "swq: rank %d: %s\n", d->rank, err);
    }
    return out[0];
}

int dist_send_str(swq_dist *d, int dest, int tag, const char *s, char *err, size_t errlen) {
    size_t n = strlen(s) + 1;
    if (n > (size_t)INT_MAX) { snprintf(err, errlen, "message too long"); return -1; }
    MPI_TRY(MPI_Send(s, (int)n, MPI_CHAR, dest, tag, MPI_COMM_WORLD), "MPI_Send");
    return 0;
}

int dist_try_recv_str(swq_dist *d, int tag, int *src, char **msg, char *err, size_t errlen) {
    int flag = 0, n = 0;
    MPI_Status st;
    MPI_TRY(MPI_Iprobe(MPI_ANY_SOURCE, tag, MPI_COMM_WORLD, &flag, &st), "MPI_Iprobe");
    if (!flag) return 0;
    MPI_TRY(MPI_Get_count(&st, MPI_CHAR, &n), "MPI_Get_count");
    char *buf = malloc((size_t)n + 1);
    if (!buf) { snprintf(err, errlen, "out of memory"); return -1; }
    int rc = MPI_Recv(buf, n, MPI_CHAR, st.MPI_SOURCE, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) { free(buf); return mpi_fail(rc, "MPI_Recv", err, errlen); }
    buf[n] = 0;
    *src = st.MPI_SOURCE;
    *msg = buf;
    return 1;
}

int dist_send_int(swq_dist *d, int dest, int tag, int v, char *err, size_t errlen) {
    MPI_TRY(MPI_Send(&v, 1, MPI_INT, dest, tag, MPI_COMM_WORLD), "MPI_Send");
    return 0;
}

int dist_recv_int(swq_dist *d, int src, int tag, int *v, char *err, size_t errlen) {
    MPI_TRY(MPI_Recv(v, 1, MPI_INT, src, tag, MPI_COMM_WORLD, MPI_STATUS_IGNORE), "MPI_Recv");
    return 0;
}

#else   // built without MPI: one process; a launcher that started several is an error

int dist_init(int *argc, char ***argv, swq_dist *d, char *err, size_t errlen) {
    memset(d, 0, sizeof(*d));
    d->world = 1;
    d->ctx = &g_world;
    detect(&g_world);
    int n = env_int("OMPI_COMM_WORLD_SIZE", env_int("SLURM_STEP_NUM_TASKS", env_int("PMI_SIZE", 1)));
    if (g_world.launched && n > 1) {
        snprintf(err, errlen, "started as one of %d ranks by %s, but this swq was built without MPI (SWQ_MPI=OFF)", n, g_world.launcher);
        return -1;
    }
    return 0;
}
void dist_finalize(swq_dist *d) {}
void dist_abort(swq_dist *d, int code) { fflush(stdout); fflush(stderr); exit(code); }
int dist_check_same(swq_dist *d, const char *what, const char *text, const char *version, char *err, size_t errlen) { return 0; }
int dist_any(swq_dist *d, int flag) { return flag != 0; }
int dist_fail_any(swq_dist *d, int failed, const char *err) {
    if (failed) fprintf(stderr, "swq: %s\n", err);
    return failed != 0;
}
static int no_mpi(char *err, size_t errlen) { snprintf(err, errlen, "built without MPI"); return -1; }
int dist_send_str(swq_dist *d, int dest, int tag, const char *s, char *err, size_t errlen) { return no_mpi(err, errlen); }
int dist_try_recv_str(swq_dist *d, int tag, int *src, char **msg, char *err, size_t errlen) { return no_mpi(err, errlen); }
int dist_send_int(swq_dist *d, int dest, int tag, int v, char *err, size_t errlen) { return no_mpi(err, errlen); }
int dist_recv_int(swq_dist *d, int src, int tag, int *v, char *err, size_t errlen) { return no_mpi(err, errlen); }
#endif
