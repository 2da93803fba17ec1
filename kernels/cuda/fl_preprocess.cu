// Preprocessing kernels (see fl_preprocess.h). Every product and sum is
// rounded on its own (__fmul_rn, __fadd_rn: never fused into an FMA) and
// taken in the CPU's order, so that the results match
// firstlook_kernels::preprocess bit for bit except where CUDA's expf differs
// from the host's (sigmoid windows, a few ulp).

#include <cuda_runtime.h>

#include "fl_preprocess.h"

namespace {

__device__ __forceinline__ float mul(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ float add(float a, float b) { return __fadd_rn(a, b); }
__device__ __forceinline__ float sub(float a, float b) { return __fsub_rn(a, b); }

__device__ __forceinline__ int32_t stored_value(const FlPpParams &p, const void *src, size_t i) {
    const unsigned shift = 32u - (unsigned)p.bits_stored;
    uint32_t w = p.sample == FL_PP_WORD8 ? (uint32_t)((const uint8_t *)src)[i]
                                         : (uint32_t)((const uint16_t *)src)[i];
    w <<= shift;
    return p.is_signed ? ((int32_t)w) >> shift : (int32_t)(w >> shift);
}

// What input (x, y) adds to a sum with weight w, as the CPU's row readers
// compute it: the weight folded into slope and intercept first.
__device__ __forceinline__ float contribution(const FlPpParams &p, const void *src, int x, int y, float w) {
    const size_t i = (size_t)y * (size_t)p.width + (size_t)x;
    if (p.sample == FL_PP_F32) {
        return mul(((const float *)src)[i], w);
    }
    const int32_t v = stored_value(p, src, i);
    if (p.has_padding && v >= p.padding_lo && v <= p.padding_hi) {
        return mul(p.fill, w);
    }
    return add(mul((float)v, mul(p.slope, w)), mul(p.intercept, w));
}

// The resized image at (x, y).
__device__ float resample(const FlPpParams &p, const void *src, int x, int y) {
    const int x0 = p.xs.first[x], xa = p.xs.at[x], xn = p.xs.at[x + 1] - xa;
    const int y0 = p.ys.first[y], ya = p.ys.at[y], yn = p.ys.at[y + 1] - ya;
    float acc = 0.0f;
    if (p.rows_first) {
        for (int k = 0; k < xn; ++k) {
            float line = 0.0f;
            for (int j = 0; j < yn; ++j) {
                line = add(line, contribution(p, src, x0 + k, y0 + j, p.ys.weights[ya + j]));
            }
            acc = add(acc, mul(line, p.xs.weights[xa + k]));
        }
    } else {
        for (int j = 0; j < yn; ++j) {
            float across = 0.0f;
            for (int k = 0; k < xn; ++k) {
                across = add(across, mul(contribution(p, src, x0 + k, y0 + j, 1.0f), p.xs.weights[xa + k]));
            }
            acc = add(acc, mul(across, p.ys.weights[ya + j]));
        }
    }
    return acc;
}

__device__ float window(const FlPpWindow &w, const float *luts, float x) {
    switch (w.kind) {
    case FL_PP_CLAMP: {
        const float t = mul(sub(x, w.a), w.b);
        if (isnan(t)) {
            return 0.0f;
        }
        return t < 0.0f ? 0.0f : (t > 1.0f ? 1.0f : t);
    }
    case FL_PP_LINEAR:
        if (x <= w.c || isnan(x)) {
            return 0.0f;
        }
        if (x > w.d) {
            return 1.0f;
        }
        return add(__fdiv_rn(sub(x, w.a), w.b), 0.5f);
    case FL_PP_SIGMOID: {
        const float e = expf(__fdiv_rn(mul(-4.0f, sub(x, w.a)), w.b));
        const float y = __fdiv_rn(1.0f, add(1.0f, e));
        return isnan(y) ? 0.0f : y;
    }
    default: {
        const float at = fmaxf(sub(x, w.a), 0.0f);
        const int last = w.lut_len - 1;
        int i;
        if (isnan(at)) {
            i = 0;
        } else if (at >= (float)last) {
            i = last;
        } else {
            i = (int)at;
        }
        return luts[w.lut_offset + i];
    }
    }
}

__device__ __forceinline__ float finish(const FlPpParams &p, float v) {
    if (p.invert) {
        v = sub(1.0f, v);
    }
    return mul(sub(v, p.mean), p.inv_std);
}

// Writes every channel of output pixel (ox, oy); `value` is only called
// inside the placement.
template <typename Value>
__device__ __forceinline__ void emit(const FlPpParams &p, float *dst, int ox, int oy, Value value) {
    const size_t plane = (size_t)p.out_rows * (size_t)p.out_cols;
    const size_t at = (size_t)oy * (size_t)p.out_cols + (size_t)ox;
    const int x = ox - p.left, y = oy - p.top;
    if (x < 0 || y < 0 || x >= p.cols || y >= p.rows) {
        const float pad = mul(sub(0.0f, p.mean), p.inv_std);
        for (int c = 0; c < p.channels; ++c) {
            dst[c * plane + at] = pad;
        }
        return;
    }
    const float v = value(x, y);
    for (int c = 0; c < p.channels; ++c) {
        dst[c * plane + at] = finish(p, window(p.windows[c], p.luts, v));
    }
}

__global__ void fused_kernel(const FlPpParams p, const void *__restrict__ src, float *__restrict__ dst) {
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= p.out_cols || oy >= p.out_rows) {
        return;
    }
    emit(p, dst, ox, oy, [&](int x, int y) { return resample(p, src, x, y); });
}

__global__ void resize_kernel(const FlPpParams p, const void *__restrict__ src, float *__restrict__ small) {
    const int x = blockIdx.x * blockDim.x + threadIdx.x;
    const int y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= p.cols || y >= p.rows) {
        return;
    }
    small[(size_t)y * (size_t)p.cols + (size_t)x] = resample(p, src, x, y);
}

__global__ void window_kernel(const FlPpParams p, const float *__restrict__ small, float *__restrict__ dst) {
    const int ox = blockIdx.x * blockDim.x + threadIdx.x;
    const int oy = blockIdx.y * blockDim.y + threadIdx.y;
    if (ox >= p.out_cols || oy >= p.out_rows) {
        return;
    }
    emit(p, dst, ox, oy, [&](int x, int y) { return small[(size_t)y * (size_t)p.cols + (size_t)x]; });
}

const dim3 BLOCK(32, 8);

dim3 grid(int cols, int rows) {
    return dim3((unsigned)(cols + BLOCK.x - 1) / BLOCK.x, (unsigned)(rows + BLOCK.y - 1) / BLOCK.y);
}

bool valid(const FlPpParams *p) {
    return p && p->width > 0 && p->height > 0 && p->rows > 0 && p->cols > 0 && p->out_rows > 0 &&
           p->out_cols > 0 && p->channels > 0 && p->channels <= FL_PP_MAX_CHANNELS &&
           (p->sample == FL_PP_F32 || (p->bits_stored >= 1 && p->bits_stored <= 16));
}

} // namespace

extern "C" {

int32_t fl_pp_fused(const FlPpParams *params, const void *src, float *dst, void *stream) {
    if (!valid(params) || !src || !dst) {
        return (int32_t)cudaErrorInvalidValue;
    }
    fused_kernel<<<grid(params->out_cols, params->out_rows), BLOCK, 0, (cudaStream_t)stream>>>(*params, src, dst);
    return (int32_t)cudaGetLastError();
}

int32_t fl_pp_resize(const FlPpParams *params, const void *src, float *small, void *stream) {
    if (!valid(params) || !src || !small) {
        return (int32_t)cudaErrorInvalidValue;
    }
    resize_kernel<<<grid(params->cols, params->rows), BLOCK, 0, (cudaStream_t)stream>>>(*params, src, small);
    return (int32_t)cudaGetLastError();
}

int32_t fl_pp_window(const FlPpParams *params, const float *small, float *dst, void *stream) {
    if (!valid(params) || !small || !dst) {
        return (int32_t)cudaErrorInvalidValue;
    }
    window_kernel<<<grid(params->out_cols, params->out_rows), BLOCK, 0, (cudaStream_t)stream>>>(*params, small, dst);
    return (int32_t)cudaGetLastError();
}

const char *fl_cu_error_string(int32_t code) { return cudaGetErrorString((cudaError_t)code); }

int32_t fl_cu_device_count(int32_t *count) {
    int n = 0;
    const cudaError_t e = cudaGetDeviceCount(&n);
    *count = n;
    return (int32_t)e;
}

int32_t fl_cu_device_name(int32_t device, char *name, size_t len) {
    cudaDeviceProp prop;
    const cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess || len == 0) {
        return (int32_t)e;
    }
    size_t i = 0;
    for (; i + 1 < len && prop.name[i] != '\0' && i < sizeof prop.name; ++i) {
        name[i] = prop.name[i];
    }
    name[i] = '\0';
    return 0;
}

int32_t fl_cu_compute_capability(int32_t device, int32_t *major, int32_t *minor) {
    int a = 0, b = 0;
    cudaError_t e = cudaDeviceGetAttribute(&a, cudaDevAttrComputeCapabilityMajor, device);
    if (e == cudaSuccess) {
        e = cudaDeviceGetAttribute(&b, cudaDevAttrComputeCapabilityMinor, device);
    }
    *major = a;
    *minor = b;
    return (int32_t)e;
}

int32_t fl_cu_stream_create(void **stream) {
    cudaStream_t s = nullptr;
    const cudaError_t e = cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
    *stream = s;
    return (int32_t)e;
}

int32_t fl_cu_stream_synchronize(void *stream) { return (int32_t)cudaStreamSynchronize((cudaStream_t)stream); }

void fl_cu_stream_destroy(void *stream) { cudaStreamDestroy((cudaStream_t)stream); }

int32_t fl_cu_malloc(void **device, size_t bytes) { return (int32_t)cudaMalloc(device, bytes); }

void fl_cu_free(void *device) { cudaFree(device); }

int32_t fl_cu_host_alloc(void **host, size_t bytes) { return (int32_t)cudaMallocHost(host, bytes); }

void fl_cu_host_free(void *host) { cudaFreeHost(host); }

int32_t fl_cu_copy(void *dst, const void *src, size_t bytes, int32_t direction, void *stream) {
    cudaMemcpyKind kind;
    switch (direction) {
    case FL_CU_TO_DEVICE:
        kind = cudaMemcpyHostToDevice;
        break;
    case FL_CU_TO_HOST:
        kind = cudaMemcpyDeviceToHost;
        break;
    case FL_CU_DEVICE_TO_DEVICE:
        kind = cudaMemcpyDeviceToDevice;
        break;
    default:
        return (int32_t)cudaErrorInvalidMemcpyDirection;
    }
    return (int32_t)cudaMemcpyAsync(dst, src, bytes, kind, (cudaStream_t)stream);
}

int32_t fl_cu_event_create(void **event) {
    cudaEvent_t e = nullptr;
    const cudaError_t r = cudaEventCreate(&e);
    *event = e;
    return (int32_t)r;
}

int32_t fl_cu_event_record(void *event, void *stream) {
    return (int32_t)cudaEventRecord((cudaEvent_t)event, (cudaStream_t)stream);
}

int32_t fl_cu_event_elapsed(const void *start, const void *end, float *ms) {
    cudaError_t e = cudaEventSynchronize((cudaEvent_t)end);
    if (e == cudaSuccess) {
        e = cudaEventElapsedTime(ms, (cudaEvent_t)start, (cudaEvent_t)end);
    }
    return (int32_t)e;
}

void fl_cu_event_destroy(void *event) { cudaEventDestroy((cudaEvent_t)event); }

} // extern "C"
