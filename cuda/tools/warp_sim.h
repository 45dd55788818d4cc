// A CPU stand-in for what the hand-written tensor-core kernels use (cuda/mma_bf16.cuh's
// primitives, warp shuffles, __syncthreads, thread and block indices, bf16), so that their index
// and fragment logic is tested without a GPU (tests/test_flash_sim.cpp; C++17, -DSWQ_WARP_SIM).
// Not a performance model, not a race detector, and memory is the host's: a plain access the
// GPU would fault on for its alignment (a float4 off a 16-byte boundary) goes through here.
//
// One thread block (1-3 dimensions) at a time (warp_sim::run_block); each CUDA thread is a
// ucontext fiber that runs until it reaches a collective: an mma, ldmatrix or shuffle of its
// warp, or a __syncthreads of its block. A collective executes, with the PTX semantics of the
// instruction, once every thread it involves has reached it; a warp whose lanes wait at
// different collectives, or a block that can make no progress, aborts with a message, as does
// an ldmatrix row or cp.async address that is not 16-byte aligned. cp.async copies land only at the
// cp.async.wait_group that covers them, and their destination holds NaNs from the issue until
// then, so a read that comes before its wait shows up as NaN in the results. Dynamic shared
// memory (SWQ_DYNAMIC_SMEM) is the size run_block is given, NaN-filled, with a guard after it
// that must be intact when the block ends; static __shared__ arrays are function statics (the
// blocks run one after another).
#ifndef SWQ_WARP_SIM_H
#define SWQ_WARP_SIM_H
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <ucontext.h>
#include <functional>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
#define __shared__ static
#define SWQ_DYNAMIC_SMEM(name) unsigned char *name = warp_sim::blk()->smem.data()
#define __align__(n) __attribute__((aligned(n)))

struct __nv_bfloat16 {
    uint16_t bits;
};
struct __nv_bfloat162 {
    __nv_bfloat16 x, y;
};
struct float2 {
    float x, y;
};
struct float4 {
    float x, y, z, w;
};
struct uint2 {
    unsigned x, y;
};
struct uint4 {
    unsigned x, y, z, w;
};
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline __nv_bfloat16 __float2bfloat16_rn(float f) {   // round to nearest even; NaN stays NaN
    uint32_t u;
    memcpy(&u, &f, 4);
    if ((u & 0x7fffffffu) > 0x7f800000u) return {(uint16_t)((u >> 16) | 0x40)};
    u += 0x7fffu + ((u >> 16) & 1);
    return {(uint16_t)(u >> 16)};
}
inline float __bfloat162float(__nv_bfloat16 b) {
    uint32_t u = (uint32_t)b.bits << 16;
    float f;
    memcpy(&f, &u, 4);
    return f;
}
struct __half {
    uint16_t bits;
};
inline __half __float2half_rn(float f) {   // round to nearest even, subnormals, overflow to inf, NaN stays NaN
    uint32_t u;
    memcpy(&u, &f, 4);
    const uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
    const uint32_t a = u & 0x7fffffffu;
    if (a > 0x7f800000u) return {(uint16_t)(sign | 0x7e00u)};
    if (a >= 0x477ff000u) return {(uint16_t)(sign | 0x7c00u)};   // >= 65520: rounds to inf
    if (a < 0x38800000u) {   // below 2^-14: a subnormal (or zero), in units of 2^-24
        float x;
        memcpy(&x, &a, 4);
        return {(uint16_t)(sign | (uint16_t)nearbyintf(x * 16777216.0f))};   // (the default mode: to nearest even)
    }
    const uint32_t m = a + 0xfffu + ((a >> 13) & 1);   // round the 13 dropped bits to nearest even
    return {(uint16_t)(sign | ((m - 0x38000000u) >> 13))};
}
inline float __half2float(__half h) {
    const uint32_t sign = (uint32_t)(h.bits & 0x8000u) << 16, e = (h.bits >> 10) & 0x1fu, m = h.bits & 0x3ffu;
    float f;
    if (e == 0) {
        f = (float)m / 16777216.0f;
        uint32_t u;
        memcpy(&u, &f, 4);
        u |= sign;
        memcpy(&f, &u, 4);
        return f;
    }
    const uint32_t u = sign | (e == 31 ? 0x7f800000u | (m << 13) : ((e + 112) << 23) | (m << 13));
    memcpy(&f, &u, 4);
    return f;
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) { return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)}; }
inline float2 __bfloat1622float2(__nv_bfloat162 v) { return {__bfloat162float(v.x), __bfloat162float(v.y)}; }
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
template <class T>
inline T atomicAdd(T *p, T v) {   // one OS thread: plain
    T o = *p;
    *p = o + v;
    return o;
}

struct sim_dim3 {
    unsigned x, y, z;
};
inline sim_dim3 blockIdx, gridDim, blockDim;

namespace warp_sim {
enum Op { RUN, SHFL, LDSM, LDSM_T, MMA, SYNC, DONE };
static const char *const OP_NAME[] = {"run", "shfl", "ldmatrix", "ldmatrix.trans", "mma", "__syncthreads", "exit"};

struct Copy {
    void *dst;
    unsigned char data[16];
};
struct Fiber {
    ucontext_t ctx;
    sim_dim3 tid;
    Op op = RUN;
    uint64_t fv = 0;   // shfl: the value's bytes in, then out
    int lanemask = 0;
    const void *addr = nullptr;   // ldmatrix: this lane's row address; r: out
    uint32_t r[4] = {0, 0, 0, 0};
    const uint32_t *a = nullptr;   // mma: A fragment, B fragment, accumulators (in/out)
    uint32_t b0 = 0, b1 = 0;
    float *c = nullptr;
    std::vector<std::vector<Copy>> groups;   // committed cp.async groups, oldest first
    std::vector<Copy> open;                  // issued, not yet committed
};
struct Block {
    std::vector<Fiber> f;
    std::vector<unsigned char> smem;   // dynamic shared memory, then GUARD bytes
    ucontext_t sched;
    int cur = 0;
    const std::function<void()> *body = nullptr;
};
static const size_t GUARD = 1 << 16, STACK = 128 << 10;
inline std::vector<char *> &stacks() {   // one per thread of the largest block so far, reused
    static std::vector<char *> v;
    return v;
}
inline Block *&blk() {
    static Block *b;
    return b;
}
inline Fiber &me() { return blk()->f[blk()->cur]; }
[[noreturn]] inline void fail(const char *what, int warp) {   // warp < 0: the block as a whole
    if (warp >= 0) fprintf(stderr, "warp_sim: block (%u,%u), warp %d: %s\n", blockIdx.x, blockIdx.y, warp, what);
    else fprintf(stderr, "warp_sim: block (%u,%u): %s\n", blockIdx.x, blockIdx.y, what);
    exit(3);
}
inline void wait_at(Op op) {
    Fiber &f = me();
    f.op = op;
    swapcontext(&f.ctx, &blk()->sched);
}
inline void entry() {
    (*blk()->body)();
    Fiber &f = me();
    bool pending = !f.open.empty();   // (empty groups left behind are harmless)
    for (const auto &g : f.groups) pending |= !g.empty();
    if (pending) fail("a thread exited with cp.async copies not waited for", blk()->cur / 32);
    f.op = DONE;
}

inline float bf(uint32_t reg, int hi) {
    __nv_bfloat16 b = {(uint16_t)(hi ? reg >> 16 : reg & 0xffffu)};
    return __bfloat162float(b);
}
inline uint32_t pack16(uint16_t lo, uint16_t hi) { return (uint32_t)lo | ((uint32_t)hi << 16); }

// The collective all 32 lanes of warp w wait at.
inline void execute(Fiber *L, int w) {
    const Op op = L[0].op;
    for (int l = 1; l < 32; l++)
        if (L[l].op != op) fail("lanes of a warp at different collectives (divergence)", w);
    if (op == SHFL) {
        uint64_t in[32];
        for (int l = 0; l < 32; l++) in[l] = L[l].fv;
        // lanemask >= 0: xor with it; < 0: from lane l - lanemask, l itself past the last (down)
        for (int l = 0; l < 32; l++) {
            const int m = L[l].lanemask, src = m >= 0 ? (l ^ m) & 31 : l - m < 32 ? l - m : l;
            L[l].fv = in[src];
        }
    } else if (op == LDSM || op == LDSM_T) {
        // x4: lanes 8j..8j+7 give the row addresses of 8x8 matrix j (8 contiguous b16 each)
        for (int l = 0; l < 32; l++)
            if ((uintptr_t)L[l].addr % 16) fail("an ldmatrix row address not 16-byte aligned", w);
        for (int l = 0; l < 32; l++)
            for (int j = 0; j < 4; j++) {
                const uint16_t *lo, *hi;
                if (op == LDSM) {
                    lo = (const uint16_t *)L[8 * j + l / 4].addr + 2 * (l % 4);
                    hi = lo + 1;
                } else {
                    lo = (const uint16_t *)L[8 * j + 2 * (l % 4)].addr + l / 4;
                    hi = (const uint16_t *)L[8 * j + 2 * (l % 4) + 1].addr + l / 4;
                }
                L[l].r[j] = pack16(*lo, *hi);
            }
    } else if (op == MMA) {   // m16n8k16, row.col, bf16 x bf16 + f32
        float A[16][16], B[16][8], D[16][8];
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            const uint32_t *a = L[l].a;
            for (int h = 0; h < 2; h++) {
                A[g][2 * t + h] = bf(a[0], h);
                A[g + 8][2 * t + h] = bf(a[1], h);
                A[g][2 * t + 8 + h] = bf(a[2], h);
                A[g + 8][2 * t + 8 + h] = bf(a[3], h);
                B[2 * t + h][g] = bf(L[l].b0, h);
                B[2 * t + 8 + h][g] = bf(L[l].b1, h);
                D[g][2 * t + h] = L[l].c[h];
                D[g + 8][2 * t + h] = L[l].c[2 + h];
            }
        }
        for (int m = 0; m < 16; m++)
            for (int n = 0; n < 8; n++) {
                float s = D[m][n];
                for (int k = 0; k < 16; k++) s += A[m][k] * B[k][n];
                D[m][n] = s;
            }
        for (int l = 0; l < 32; l++) {
            const int g = l / 4, t = l % 4;
            for (int h = 0; h < 2; h++) {
                L[l].c[h] = D[g][2 * t + h];
                L[l].c[2 + h] = D[g + 8][2 * t + h];
            }
        }
    } else {
        fail("a warp collective that is not one", w);
    }
    for (int l = 0; l < 32; l++) L[l].op = RUN;
}

// (apart, so that getcontext, which returns twice, clobbers no loop variable)
[[gnu::noinline]] inline void init_fiber(Block &b, unsigned i) {
    Fiber &f = b.f[i];
    f.tid = {i % blockDim.x, i / blockDim.x % blockDim.y, i / (blockDim.x * blockDim.y)};
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stacks()[i];
    f.ctx.uc_stack.ss_size = STACK;
    f.ctx.uc_link = &b.sched;
    makecontext(&f.ctx, entry, 0);
}

// Runs `body` (the kernel call) as a thread block of shape `block` (threads a multiple of 32,
// numbered x fastest as in CUDA; warps are 32 consecutive numbers) with smem bytes of dynamic
// shared memory, at blockIdx.
inline void run_block(sim_dim3 block, size_t smem, const std::function<void()> &body) {
    const int nthreads = (int)(block.x * (block.y ? block.y : 1) * (block.z ? block.z : 1));
    if (nthreads % 32) fail("a block of threads not a multiple of 32", -1);
    Block b;
    b.f.resize(nthreads);
    b.body = &body;
    b.smem.assign(smem + GUARD, 0xa5);
    memset(b.smem.data(), 0xff, smem);   // bf16 and float NaN
    blk() = &b;
    blockDim = {block.x, block.y ? block.y : 1, block.z ? block.z : 1};
    while ((int)stacks().size() < nthreads) {
        char *st = (char *)malloc(STACK);
        if (!st) fail("out of memory for thread stacks", -1);
        stacks().push_back(st);
    }
    for (int i = 0; i < nthreads; i++) init_fiber(b, i);
    for (;;) {
        for (int i = 0; i < nthreads; i++)
            if (b.f[i].op == RUN) {
                b.cur = i;
                swapcontext(&b.sched, &b.f[i].ctx);
            }
        int done = 0, sync = 0, progress = 0;
        for (int w = 0; w < nthreads / 32; w++) {
            Fiber *L = &b.f[32 * w];
            int warp_op = 0, exited = 0;
            for (int l = 0; l < 32; l++) {
                warp_op += L[l].op >= SHFL && L[l].op <= MMA;
                exited += L[l].op == DONE;
            }
            if (warp_op && exited) fail("a warp collective with exited lanes", w);
            if (warp_op) {
                execute(L, w);
                progress = 1;
            }
        }
        if (progress) continue;
        for (int i = 0; i < nthreads; i++) {
            done += b.f[i].op == DONE;
            sync += b.f[i].op == SYNC;
        }
        if (done == nthreads) break;
        if (sync + done != nthreads) fail("no thread can go on (deadlock)", -1);
        for (int i = 0; i < nthreads; i++)
            if (b.f[i].op == SYNC) b.f[i].op = RUN;
    }
    for (size_t i = smem; i < smem + GUARD; i++)
        if (b.smem[i] != 0xa5) fail("wrote past the end of its dynamic shared memory", -1);
    blk() = nullptr;
}
inline void run_block(int nthreads, size_t smem, const std::function<void()> &body) {
    run_block(sim_dim3{(unsigned)nthreads, 1, 1}, smem, body);
}
// Every block of the grid (gx, gy), one after another, as a launch <<<(gx, gy), block, smem>>>.
inline void run_grid(unsigned gx, unsigned gy, sim_dim3 block, size_t smem, const std::function<void()> &body) {
    gridDim = {gx, gy, 1};
    for (unsigned y = 0; y < gy; y++)
        for (unsigned x = 0; x < gx; x++) {
            blockIdx = {x, y, 0};
            run_block(block, smem, body);
        }
}
}   // namespace warp_sim

#define threadIdx (warp_sim::me().tid)

inline void __syncthreads() { warp_sim::wait_at(warp_sim::SYNC); }
template <class T>
inline T __shfl_xor_sync(unsigned mask, T v, int lanemask) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    (void)mask;
    warp_sim::Fiber &f = warp_sim::me();
    f.fv = 0;
    memcpy(&f.fv, &v, sizeof v);
    f.lanemask = lanemask;
    warp_sim::wait_at(warp_sim::SHFL);
    memcpy(&v, &warp_sim::me().fv, sizeof v);
    return v;
}

template <class T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta) {
    static_assert(sizeof(T) <= 8, "a shuffle moves at most 8 bytes");
    (void)mask;
    if (delta < 1 || delta > 31) warp_sim::fail("__shfl_down_sync: a delta the simulator does not take", (int)(threadIdx.x / 32));
    warp_sim::Fiber &f = warp_sim::me();
    f.fv = 0;
    memcpy(&f.fv, &v, sizeof v);
    f.lanemask = -(int)delta;
    warp_sim::wait_at(warp_sim::SHFL);
    memcpy(&v, &warp_sim::me().fv, sizeof v);
    return v;
}

// cuda/mma_bf16.cuh's primitives
inline void mma_ldsm(uint32_t r[4], const __nv_bfloat16 *p) {
    warp_sim::me().addr = p;
    warp_sim::wait_at(warp_sim::LDSM);
    memcpy(r, warp_sim::me().r, sizeof(uint32_t) * 4);
}
inline void mma_ldsm_t(uint32_t r[4], const __nv_bfloat16 *p) {
    warp_sim::me().addr = p;
    warp_sim::wait_at(warp_sim::LDSM_T);
    memcpy(r, warp_sim::me().r, sizeof(uint32_t) * 4);
}
inline void mma_16816(float c[4], const uint32_t a[4], uint32_t b0, uint32_t b1) {
    warp_sim::Fiber &f = warp_sim::me();
    f.a = a;
    f.b0 = b0;
    f.b1 = b1;
    f.c = c;
    warp_sim::wait_at(warp_sim::MMA);
}
inline void cp_async16(__nv_bfloat16 *dst, const __nv_bfloat16 *src, bool valid) {
    if ((uintptr_t)dst % 16 || (valid && (uintptr_t)src % 16))
        warp_sim::fail("a cp.async address not 16-byte aligned", (int)(threadIdx.x / 32));
    warp_sim::Copy c;
    c.dst = dst;
    if (valid) memcpy(c.data, src, 16);
    else memset(c.data, 0, 16);
    memset(dst, 0xff, 16);   // NaN until the wait
    warp_sim::me().open.push_back(c);
}
inline void cp_async_commit() {
    warp_sim::Fiber &f = warp_sim::me();
    f.groups.push_back(f.open);
    f.open.clear();
}
template <int N>
inline void cp_async_wait() {
    warp_sim::Fiber &f = warp_sim::me();
    while ((int)f.groups.size() > N) {
        for (const warp_sim::Copy &c : f.groups.front()) memcpy(c.dst, c.data, 16);
        f.groups.erase(f.groups.begin());
    }
}
#endif
