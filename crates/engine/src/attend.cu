// One decode step's attention on a CUDA GPU, reading the K/V cache where it lies (see
// attend.rs for the contract; the CPU version there is the reference the tests compare with).
//
// Why: through candle, a step of the streaming cache costs per layer a rotation of the query
// to its cache place, two score matmuls (sinks and window), a concatenation, a scale, a softmax
// and a matmul with V: some eight launches for a few microseconds of work each. A model as
// small as SmolLM2 is launch-bound on a big GPU, so those launches were the whole 18% gap
// between the streaming cache and a plain one. Here it is two launches, the same for both.
//
// Flash-decoding: the keys are split in chunks of CHUNK; block (h, c) scores chunk c for query
// head h (sinks with the query at its cache place, the window with the query at its text
// position), and writes the chunk's max score, its sum of exp(score - max) and its unnormalized
// weighted sum of V rows. The second kernel merges the chunks of each head.

#include <cuda_fp16.h>

#define THREADS 128
#define CHUNK 128

// The cache's values in f32, or in f16 (the compact memory, as on the CPU): widened as read.
__device__ __forceinline__ float4 load4(const float* p) {
    return *reinterpret_cast<const float4*>(p);
}
__device__ __forceinline__ float4 load4(const __half* p) {
    const __half2* h = reinterpret_cast<const __half2*>(p);
    const float2 a = __half22float2(h[0]), b = __half22float2(h[1]);
    return make_float4(a.x, a.y, b.x, b.y);
}
__device__ __forceinline__ float to_f32(float x) { return x; }
__device__ __forceinline__ float to_f32(__half x) { return __half2float(x); }

__device__ __forceinline__ float warp_max(float x) {
    for (int o = 16; o > 0; o >>= 1) x = fmaxf(x, __shfl_xor_sync(0xffffffffu, x, o));
    return x;
}

__device__ __forceinline__ float warp_sum(float x) {
    for (int o = 16; o > 0; o >>= 1) x += __shfl_xor_sync(0xffffffffu, x, o);
    return x;
}

// Every thread of the block gets the result. `red` holds THREADS / 32 floats.
__device__ float block_max(float x, float* red) {
    x = warp_max(x);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    float r = red[0];
    for (int i = 1; i < THREADS / 32; i++) r = fmaxf(r, red[i]);
    __syncthreads();
    return r;
}

__device__ float block_sum(float x, float* red) {
    x = warp_sum(x);
    if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = x;
    __syncthreads();
    float r = 0.f;
    for (int i = 0; i < THREADS / 32; i++) r += red[i];
    __syncthreads();
    return r;
}

// k, v: (nkv, cap, hd) with nkv = nh / rep; part: (nh, nsplit, hd + 2).
// rope == 0: q is (two_q ? 2 : 1, nh, hd), already rotated (text position, then cache place).
// rope == 1 (pairs 2i, 2i+1) or 2 (pairs i, i + hd/2, "neox"): q is (1, nh, hd) before RoPE,
// rotated here with the tables cos_t/sin_t (text position) and, if two_q, cos_p/sin_p (cache
// place), each hd/2 floats: the rotation the caller would otherwise launch per query, once or
// twice per layer, is folded in, so a streaming step launches what a plain one does.
// hd % 4 == 0 and k, v aligned to 4 values (checked by the caller). KV: float or __half.
template <typename KV>
__device__ void sink_decode_partial(
    const float* __restrict__ q, const KV* __restrict__ k, const KV* __restrict__ v,
    const float* __restrict__ cos_t, const float* __restrict__ sin_t,
    const float* __restrict__ cos_p, const float* __restrict__ sin_p, float* __restrict__ part,
    int nh, int rep, int cap, int hd, int read, int sinks, int two_q, int rope, float scale) {
    extern __shared__ float sh[];
    float* qt = sh;              // hd: the query at its text position
    float* qp = sh + hd;         // hd: the query at its cache place (scores the sinks)
    float* p = sh + 2 * hd;      // CHUNK: scores, then their exponentials
    float* acc = p + CHUNK;      // THREADS: partial sums of V rows
    float* red = acc + THREADS;  // THREADS / 32

    const int h = blockIdx.x, split = blockIdx.y, nsplit = gridDim.y;
    const int kvh = h / rep;
    if (rope == 0) {
        for (int d = threadIdx.x; d < hd; d += THREADS) {
            const float a = q[h * hd + d];
            qt[d] = a;
            qp[d] = two_q ? q[(nh + h) * hd + d] : a;
        }
    } else {
        const int half = hd / 2;
        for (int i = threadIdx.x; i < half; i += THREADS) {
            const int i0 = rope == 2 ? i : 2 * i;
            const int i1 = rope == 2 ? i + half : 2 * i + 1;
            const float x0 = q[h * hd + i0], x1 = q[h * hd + i1];
            float c = cos_t[i], s = sin_t[i];
            qt[i0] = x0 * c - x1 * s;
            qt[i1] = x0 * s + x1 * c;
            if (two_q) {
                c = cos_p[i];
                s = sin_p[i];
            }
            qp[i0] = x0 * c - x1 * s;
            qp[i1] = x0 * s + x1 * c;
        }
    }
    __syncthreads();

    const int start = split * CHUNK;
    const int n = min(read - start, CHUNK);
    const KV* kb = k + ((size_t)kvh * cap + start) * hd;
    const KV* vb = v + ((size_t)kvh * cap + start) * hd;

    float mx = -__int_as_float(0x7f800000);
    for (int i = threadIdx.x; i < n; i += THREADS) {
        const float* qq = (start + i < sinks) ? qp : qt;
        const KV* kr = kb + (size_t)i * hd;
        float s0 = 0.f, s1 = 0.f, s2 = 0.f, s3 = 0.f;
#pragma unroll 4
        for (int d4 = 0; d4 < hd / 4; d4++) {
            const float4 kk = load4(kr + 4 * d4);
            s0 += qq[4 * d4] * kk.x;
            s1 += qq[4 * d4 + 1] * kk.y;
            s2 += qq[4 * d4 + 2] * kk.z;
            s3 += qq[4 * d4 + 3] * kk.w;
        }
        const float s = ((s0 + s1) + (s2 + s3)) * scale;
        p[i] = s;
        mx = fmaxf(mx, s);
    }
    mx = block_max(mx, red);
    float sum = 0.f;
    for (int i = threadIdx.x; i < n; i += THREADS) {
        const float e = expf(p[i] - mx);
        p[i] = e;
        sum += e;
    }
    sum = block_sum(sum, red);

    float* out = part + ((size_t)h * nsplit + split) * (hd + 2);
    if (hd < THREADS) {
        // G groups of hd threads, group g summing rows g, g + G, ...
        const int G = THREADS / hd;
        const int g = threadIdx.x / hd, d = threadIdx.x % hd;
        float a0 = 0.f, a1 = 0.f;
        if (g < G) {
            int i = g;
            for (; i + G < n; i += 2 * G) {
                a0 += p[i] * to_f32(vb[(size_t)i * hd + d]);
                a1 += p[i + G] * to_f32(vb[(size_t)(i + G) * hd + d]);
            }
            if (i < n) a0 += p[i] * to_f32(vb[(size_t)i * hd + d]);
        }
        acc[threadIdx.x] = a0 + a1;
        __syncthreads();
        if (threadIdx.x < hd) {
            float t = 0.f;
            for (int j = 0; j < G; j++) t += acc[j * hd + threadIdx.x];
            out[2 + threadIdx.x] = t;
        }
    } else {
        for (int d = threadIdx.x; d < hd; d += THREADS) {
            float a = 0.f;
            for (int i = 0; i < n; i++) a += p[i] * to_f32(vb[(size_t)i * hd + d]);
            out[2 + d] = a;
        }
    }
    if (threadIdx.x == 0) {
        out[0] = mx;
        out[1] = sum;
    }
}

// The two entry points: the cache in f32, and in f16.
#define PARTIAL_ARGS(KV)                                                                       \
    const float* __restrict__ q, const KV* __restrict__ k, const KV* __restrict__ v,           \
        const float* __restrict__ cos_t, const float* __restrict__ sin_t,                      \
        const float* __restrict__ cos_p, const float* __restrict__ sin_p,                      \
        float* __restrict__ part, int nh, int rep, int cap, int hd, int read, int sinks,        \
        int two_q, int rope, float scale
#define PARTIAL_CALL                                                                           \
    sink_decode_partial(q, k, v, cos_t, sin_t, cos_p, sin_p, part, nh, rep, cap, hd, read,     \
                        sinks, two_q, rope, scale)
extern "C" __global__ void sink_decode_partial_f32(PARTIAL_ARGS(float)) { PARTIAL_CALL; }
extern "C" __global__ void sink_decode_partial_f16(PARTIAL_ARGS(__half)) { PARTIAL_CALL; }

// part: (nh, nsplit, hd + 2) from above; out: (nh, hd). One block per head.
extern "C" __global__ void sink_decode_combine(
    const float* __restrict__ part, float* __restrict__ out, int hd, int nsplit) {
    const int h = blockIdx.x;
    const float* ph = part + (size_t)h * nsplit * (hd + 2);
    float m = -__int_as_float(0x7f800000);
    for (int s = 0; s < nsplit; s++) m = fmaxf(m, ph[(size_t)s * (hd + 2)]);
    float l = 0.f;
    for (int s = 0; s < nsplit; s++) {
        const float* c = ph + (size_t)s * (hd + 2);
        l += c[1] * expf(c[0] - m);
    }
    const float inv = 1.f / l;
    for (int d = threadIdx.x; d < hd; d += blockDim.x) {
        float a = 0.f;
        for (int s = 0; s < nsplit; s++) {
            const float* c = ph + (size_t)s * (hd + 2);
            a += c[2 + d] * expf(c[0] - m);
        }
        out[(size_t)h * hd + d] = a * inv;
    }
}
