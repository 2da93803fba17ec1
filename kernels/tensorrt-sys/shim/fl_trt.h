/* A small C interface over TensorRT's C++ API and the few CUDA runtime
 * calls the TensorRT backend needs. Plain C: bindgen reads this header only,
 * never TensorRT's. Every call that can fail returns 0 on success, or an
 * error code with a message kept for fl_last_error() on the calling thread. */
#ifndef FL_TRT_H
#define FL_TRT_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct FlTrtRuntime FlTrtRuntime;
typedef struct FlTrtEngine FlTrtEngine;
typedef struct FlTrtContext FlTrtContext;
typedef struct FlTrtBlob FlTrtBlob;

/* Severity as TensorRT's ILogger::Severity: 0 internal error, 1 error,
 * 2 warning, 3 info, 4 verbose. */
typedef void (*FlTrtLogFn)(void *user, int32_t severity, const char *message);

enum FlStatus {
    FL_OK = 0,
    FL_ERR_CUDA = 1,
    FL_ERR_TENSORRT = 2,
    FL_ERR_ARGUMENT = 3,
    FL_ERR_UNSUPPORTED = 4
};

/* Data types of engine tensors (a subset of nvinfer1::DataType). */
enum FlDataType {
    FL_FLOAT = 0,
    FL_HALF = 1,
    FL_INT8 = 2,
    FL_INT32 = 3,
    FL_BOOL = 4,
    FL_UINT8 = 5,
    FL_OTHER = 99
};

/* The message of the last failed call on this thread ("" if none). */
const char *fl_last_error(void);

/* TensorRT has one logger per process: the first callback given, here or
 * to fl_trt_runtime_create / fl_trt_build, receives every message; later
 * ones are ignored. `user` must stay valid for the life of the process. */
void fl_trt_set_log(FlTrtLogFn log, void *user);

/* TensorRT version the shim was compiled against, as NV_TENSORRT_VERSION
 * would give it for major.minor.patch (e.g. 100300 for 10.3.0). */
int32_t fl_trt_header_version(void);
/* The version of the TensorRT library loaded at run time. */
int32_t fl_trt_library_version(void);

/* CUDA: devices, their compute capability, streams, memory. */
int32_t fl_cuda_device_count(int32_t *count);
int32_t fl_cuda_compute_capability(int32_t device, int32_t *major, int32_t *minor);
int32_t fl_cuda_integrated(int32_t device, int32_t *integrated);
int32_t fl_cuda_stream_create(void **stream);
int32_t fl_cuda_stream_synchronize(void *stream);
void fl_cuda_stream_destroy(void *stream);
int32_t fl_cuda_malloc(void **device, size_t bytes);
void fl_cuda_free(void *device);
/* Page-locked host memory mapped into the device's address space (on a
 * Jetson the iGPU reads it in place). */
int32_t fl_cuda_host_alloc_mapped(void **host, void **device, size_t bytes);
void fl_cuda_host_free(void *host);
int32_t fl_cuda_copy_to_device(void *device, const void *host, size_t bytes, void *stream);
int32_t fl_cuda_copy_to_host(void *host, const void *device, size_t bytes, void *stream);

/* Runtime and engines. */
FlTrtRuntime *fl_trt_runtime_create(FlTrtLogFn log, void *user);
void fl_trt_runtime_destroy(FlTrtRuntime *runtime);
FlTrtEngine *fl_trt_engine_deserialize(FlTrtRuntime *runtime, const void *plan, size_t bytes);
void fl_trt_engine_destroy(FlTrtEngine *engine);
int32_t fl_trt_engine_io_count(const FlTrtEngine *engine);
/* Valid as long as the engine lives. */
const char *fl_trt_engine_io_name(const FlTrtEngine *engine, int32_t index);
/* 1 for an input, 0 for an output, -1 for an unknown name. */
int32_t fl_trt_engine_io_is_input(const FlTrtEngine *engine, const char *name);
/* Writes up to `capacity` dimensions; returns their number, or -1. */
int32_t fl_trt_engine_io_shape(const FlTrtEngine *engine, const char *name, int64_t *dims,
                               int32_t capacity);
int32_t fl_trt_engine_io_type(const FlTrtEngine *engine, const char *name);

/* Execution. */
FlTrtContext *fl_trt_context_create(FlTrtEngine *engine);
void fl_trt_context_destroy(FlTrtContext *context);
int32_t fl_trt_context_set_address(FlTrtContext *context, const char *name, void *device);
int32_t fl_trt_context_enqueue(FlTrtContext *context, void *stream);

/* Building an engine from ONNX on this device. */
typedef struct FlTrtBuildOptions {
    /* Let TensorRT choose FP16 kernels (TensorRT 10; with TensorRT 11 the
     * network is strongly typed and precision comes from the model). */
    int32_t fp16;
    /* INT8 (TensorRT 10): from the model's Q/DQ nodes, or with the
     * calibration cache below for a model without them; with TensorRT 11
     * INT8 comes from Q/DQ nodes only. */
    int32_t int8;
    const void *calibration_cache;
    size_t calibration_cache_bytes;
    /* Upper bound of the builder's scratch memory. */
    size_t workspace_bytes;
} FlTrtBuildOptions;

int32_t fl_trt_build(const void *onnx, size_t onnx_bytes, const FlTrtBuildOptions *options,
                     FlTrtLogFn log, void *user, FlTrtBlob **plan);
const void *fl_trt_blob_data(const FlTrtBlob *blob);
size_t fl_trt_blob_size(const FlTrtBlob *blob);
void fl_trt_blob_destroy(FlTrtBlob *blob);

#ifdef __cplusplus
}
#endif

#endif
