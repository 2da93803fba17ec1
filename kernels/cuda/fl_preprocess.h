/* CUDA preprocessing: stored pixel samples to the model's input tensor, the
 * same numbers as firstlook_kernels::preprocess::Pipeline on the CPU. Plain C:
 * bindgen reads this header only, never CUDA's. Pointers marked "device" are
 * device memory; every call returns a cudaError_t code (0 on success),
 * fl_cu_error_string() gives its text. Launches are asynchronous on `stream`
 * (a cudaStream_t, NULL for the default stream). */
#ifndef FL_PREPROCESS_H
#define FL_PREPROCESS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define FL_PP_MAX_CHANNELS 8

/* How input samples are stored. */
enum FlPpSample {
    /* 8- or 16-bit words (little-endian), masked to bits_stored and
     * sign-extended when is_signed, then slope * v + intercept. */
    FL_PP_WORD8 = 0,
    FL_PP_WORD16 = 1,
    /* Modality values already (slope and intercept unused). */
    FL_PP_F32 = 2
};

enum FlPpWindowKind {
    /* t = (x - a) * b, NaN -> 0, clamped to [0, 1] (fixed and percentile
     * windows: a = lower bound, b = 1 / (upper - lower)). */
    FL_PP_CLAMP = 0,
    /* DICOM LINEAR: a = centre - 0.5, b = width - 1, c = a - b / 2,
     * d = a + b / 2; x <= c or NaN -> 0, x > d -> 1, else (x - a) / b + 0.5. */
    FL_PP_LINEAR = 1,
    /* DICOM SIGMOID: a = centre, b = width. */
    FL_PP_SIGMOID = 2,
    /* VOI LUT: a = first mapped input; entries luts[lut_offset ..
     * lut_offset + lut_len]. */
    FL_PP_LUT = 3
};

typedef struct FlPpWindow {
    int32_t kind;
    float a, b, c, d;
    int32_t lut_offset;
    int32_t lut_len;
} FlPpWindow;

/* Resampling taps along one axis (device): output o is the weighted sum of
 * inputs first[o] .. first[o] + (at[o + 1] - at[o]) with weights
 * weights[at[o] .. at[o + 1]]. */
typedef struct FlPpTaps {
    const int32_t *first;
    const int32_t *at;
    const float *weights;
} FlPpTaps;

typedef struct FlPpParams {
    /* Input. */
    int32_t width, height;
    int32_t sample;
    int32_t is_signed;
    int32_t bits_stored;
    float slope, intercept;
    /* Stored values in [padding_lo, padding_hi] read as `fill` (a modality
     * value) when has_padding. */
    int32_t has_padding;
    int32_t padding_lo, padding_hi;
    float fill;
    /* The resized image, placed at (top, left) in out_rows x out_cols. */
    int32_t rows, cols;
    int32_t top, left;
    int32_t out_rows, out_cols;
    /* Accumulation order, as the CPU chose it: 1 adds input rows first,
     * 0 takes each input row's columns first. */
    int32_t rows_first;
    FlPpTaps xs, ys;
    /* Output: `channels` planes, one window each, then 1 - v when invert,
     * then (v - mean) * inv_std; outside the placement (0 - mean) * inv_std. */
    int32_t channels;
    FlPpWindow windows[FL_PP_MAX_CHANNELS];
    const float *luts;
    int32_t invert;
    float mean, inv_std;
} FlPpParams;

/* One pass: resize, window every channel, invert, pad, normalise. */
int32_t fl_pp_fused(const FlPpParams *params, const void *src, float *dst, void *stream);
/* The resized image alone (rows x cols), for windows that need its values
 * (percentiles), then fl_pp_window from it. */
int32_t fl_pp_resize(const FlPpParams *params, const void *src, float *small, void *stream);
int32_t fl_pp_window(const FlPpParams *params, const float *small, float *dst, void *stream);

/* The CUDA runtime calls the safe wrapper needs. */
const char *fl_cu_error_string(int32_t code);
int32_t fl_cu_device_count(int32_t *count);
int32_t fl_cu_device_name(int32_t device, char *name, size_t len);
int32_t fl_cu_compute_capability(int32_t device, int32_t *major, int32_t *minor);
int32_t fl_cu_stream_create(void **stream);
int32_t fl_cu_stream_synchronize(void *stream);
void fl_cu_stream_destroy(void *stream);
int32_t fl_cu_malloc(void **device, size_t bytes);
void fl_cu_free(void *device);
int32_t fl_cu_host_alloc(void **host, size_t bytes);
void fl_cu_host_free(void *host);
enum FlCuCopy { FL_CU_TO_DEVICE = 0, FL_CU_TO_HOST = 1, FL_CU_DEVICE_TO_DEVICE = 2 };
int32_t fl_cu_copy(void *dst, const void *src, size_t bytes, int32_t direction, void *stream);
int32_t fl_cu_event_create(void **event);
int32_t fl_cu_event_record(void *event, void *stream);
/* Waits for `end`, then the milliseconds between the two. */
int32_t fl_cu_event_elapsed(const void *start, const void *end, float *ms);
void fl_cu_event_destroy(void *event);

#ifdef __cplusplus
}
#endif

#endif
