// The C interface of fl_trt.h over TensorRT's C++ API (10.x and 11.x) and
// the CUDA runtime. No exception crosses it: every entry point catches.

#include "fl_trt.h"

#include <NvInfer.h>
#include <NvInferVersion.h>
#include <NvOnnxParser.h>
#include <cuda_runtime_api.h>

#include <cstring>
#include <memory>
#include <string>
#include <vector>

#if NV_TENSORRT_MAJOR < 10
#error "firstlook's TensorRT shim needs TensorRT 10 or later"
#endif

namespace {

thread_local std::string last_error;

// Never throws: a message that cannot be stored is dropped, the code stays.
int32_t fail(int32_t code, const char *message, const char *detail = nullptr) noexcept {
    try {
        last_error = message;
        if (detail != nullptr) {
            last_error += ": ";
            last_error += detail;
        }
    } catch (...) {
    }
    return code;
}

void clear_error() noexcept { last_error.clear(); }

int32_t cuda(cudaError_t e, const char *what) noexcept {
    if (e == cudaSuccess) {
        return FL_OK;
    }
    return fail(FL_ERR_CUDA, what, cudaGetErrorString(e));
}

// TensorRT keeps one logger for the whole process (the first one it is
// given), so there is one, never freed; its callback is set once.
class Logger final : public nvinfer1::ILogger {
  public:
    void set(FlTrtLogFn fn, void *user) noexcept {
        if (fn_ == nullptr) {
            fn_ = fn;
            user_ = user;
        }
    }
    void log(Severity severity, nvinfer1::AsciiChar const *msg) noexcept override {
        if (severity <= Severity::kERROR && msg != nullptr) {
            fail(FL_ERR_TENSORRT, msg);
        }
        if (fn_ != nullptr) {
            fn_(user_, static_cast<int32_t>(severity), msg == nullptr ? "" : msg);
        }
    }

  private:
    FlTrtLogFn fn_ = nullptr;
    void *user_ = nullptr;
};

Logger &logger(FlTrtLogFn fn, void *user) noexcept {
    static Logger the_logger;
    the_logger.set(fn, user);
    return the_logger;
}

#if NV_TENSORRT_MAJOR < 11
// INT8 from a calibration cache made offline: TensorRT reads the cache and
// never asks for a batch.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class CacheCalibrator final : public nvinfer1::IInt8EntropyCalibrator2 {
  public:
    CacheCalibrator(const void *cache, size_t bytes)
        : cache_(static_cast<const char *>(cache), static_cast<const char *>(cache) + bytes) {}
    int32_t getBatchSize() const noexcept override { return 1; }
    bool getBatch(void *[], char const *[], int32_t) noexcept override { return false; }
    void const *readCalibrationCache(std::size_t &length) noexcept override {
        length = cache_.size();
        return cache_.empty() ? nullptr : cache_.data();
    }
    void writeCalibrationCache(void const *, std::size_t) noexcept override {}

  private:
    std::vector<char> cache_;
};
#pragma GCC diagnostic pop
#endif

int32_t fl_type(nvinfer1::DataType t) {
    switch (t) {
    case nvinfer1::DataType::kFLOAT:
        return FL_FLOAT;
    case nvinfer1::DataType::kHALF:
        return FL_HALF;
    case nvinfer1::DataType::kINT8:
        return FL_INT8;
    case nvinfer1::DataType::kINT32:
        return FL_INT32;
    case nvinfer1::DataType::kBOOL:
        return FL_BOOL;
    case nvinfer1::DataType::kUINT8:
        return FL_UINT8;
    default:
        return FL_OTHER;
    }
}

// A handle made by `make` (false: it failed); a failure or an exception
// leaves a message (TensorRT's own where it logged one) and gives null.
template <class Handle, class Make> Handle *guarded(Make make, const char *failed) noexcept {
    try {
        auto handle = std::make_unique<Handle>();
        if (make(*handle)) {
            return handle.release();
        }
        if (last_error.empty()) {
            fail(FL_ERR_TENSORRT, failed);
        }
    } catch (const std::exception &e) {
        fail(FL_ERR_TENSORRT, e.what());
    } catch (...) {
        fail(FL_ERR_TENSORRT, "unknown C++ exception");
    }
    return nullptr;
}

} // namespace

struct FlTrtRuntime {
    std::unique_ptr<nvinfer1::IRuntime> runtime;
};

struct FlTrtEngine {
    std::unique_ptr<nvinfer1::ICudaEngine> engine;
};

struct FlTrtContext {
    std::unique_ptr<nvinfer1::IExecutionContext> context;
};

struct FlTrtBlob {
    std::unique_ptr<nvinfer1::IHostMemory> memory;
};

extern "C" {

const char *fl_last_error(void) { return last_error.c_str(); }

void fl_trt_set_log(FlTrtLogFn log, void *user) { logger(log, user); }

int32_t fl_trt_header_version(void) { return static_cast<int32_t>(NV_TENSORRT_VERSION); }

int32_t fl_trt_library_version(void) { return getInferLibVersion(); }

int32_t fl_cuda_device_count(int32_t *count) {
    int n = 0;
    *count = 0;
    int32_t r = cuda(cudaGetDeviceCount(&n), "cudaGetDeviceCount");
    if (r == FL_OK) {
        *count = n;
    }
    return r;
}

int32_t fl_cuda_compute_capability(int32_t device, int32_t *major, int32_t *minor) {
    int ma = 0, mi = 0;
    int32_t r = cuda(cudaDeviceGetAttribute(&ma, cudaDevAttrComputeCapabilityMajor, device),
                     "compute capability");
    if (r == FL_OK) {
        r = cuda(cudaDeviceGetAttribute(&mi, cudaDevAttrComputeCapabilityMinor, device),
                 "compute capability");
    }
    *major = ma;
    *minor = mi;
    return r;
}

int32_t fl_cuda_integrated(int32_t device, int32_t *integrated) {
    int v = 0;
    int32_t r = cuda(cudaDeviceGetAttribute(&v, cudaDevAttrIntegrated, device), "integrated GPU");
    *integrated = v;
    return r;
}

int32_t fl_cuda_stream_create(void **stream) {
    cudaStream_t s = nullptr;
    int32_t r = cuda(cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking), "cudaStreamCreate");
    *stream = s;
    return r;
}

int32_t fl_cuda_stream_synchronize(void *stream) {
    return cuda(cudaStreamSynchronize(static_cast<cudaStream_t>(stream)), "cudaStreamSynchronize");
}

void fl_cuda_stream_destroy(void *stream) {
    if (stream != nullptr) {
        cudaStreamDestroy(static_cast<cudaStream_t>(stream));
    }
}

int32_t fl_cuda_malloc(void **device, size_t bytes) {
    *device = nullptr;
    return cuda(cudaMalloc(device, bytes), "cudaMalloc");
}

void fl_cuda_free(void *device) {
    if (device != nullptr) {
        cudaFree(device);
    }
}

int32_t fl_cuda_host_alloc_mapped(void **host, void **device, size_t bytes) {
    *host = nullptr;
    *device = nullptr;
    int32_t r = cuda(cudaHostAlloc(host, bytes, cudaHostAllocMapped), "cudaHostAlloc");
    if (r != FL_OK) {
        return r;
    }
    r = cuda(cudaHostGetDevicePointer(device, *host, 0), "cudaHostGetDevicePointer");
    if (r != FL_OK) {
        cudaFreeHost(*host);
        *host = nullptr;
    }
    return r;
}

void fl_cuda_host_free(void *host) {
    if (host != nullptr) {
        cudaFreeHost(host);
    }
}

int32_t fl_cuda_copy_to_device(void *device, const void *host, size_t bytes, void *stream) {
    return cuda(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice,
                                static_cast<cudaStream_t>(stream)),
                "copy to the device");
}

int32_t fl_cuda_copy_to_host(void *host, const void *device, size_t bytes, void *stream) {
    return cuda(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost,
                                static_cast<cudaStream_t>(stream)),
                "copy to the host");
}

FlTrtRuntime *fl_trt_runtime_create(FlTrtLogFn log, void *user) {
    clear_error();
    return guarded<FlTrtRuntime>(
        [&](FlTrtRuntime &r) {
            r.runtime.reset(nvinfer1::createInferRuntime(logger(log, user)));
            return r.runtime != nullptr;
        },
        "createInferRuntime failed");
}

void fl_trt_runtime_destroy(FlTrtRuntime *runtime) { delete runtime; }

FlTrtEngine *fl_trt_engine_deserialize(FlTrtRuntime *runtime, const void *plan, size_t bytes) {
    clear_error();
    if (runtime == nullptr || plan == nullptr) {
        fail(FL_ERR_ARGUMENT, "no runtime or no plan");
        return nullptr;
    }
    return guarded<FlTrtEngine>(
        [&](FlTrtEngine &e) {
            e.engine.reset(runtime->runtime->deserializeCudaEngine(plan, bytes));
            return e.engine != nullptr;
        },
        "the engine plan could not be deserialised");
}

void fl_trt_engine_destroy(FlTrtEngine *engine) { delete engine; }

int32_t fl_trt_engine_io_count(const FlTrtEngine *engine) {
    return engine->engine->getNbIOTensors();
}

const char *fl_trt_engine_io_name(const FlTrtEngine *engine, int32_t index) {
    return engine->engine->getIOTensorName(index);
}

int32_t fl_trt_engine_io_is_input(const FlTrtEngine *engine, const char *name) {
    switch (engine->engine->getTensorIOMode(name)) {
    case nvinfer1::TensorIOMode::kINPUT:
        return 1;
    case nvinfer1::TensorIOMode::kOUTPUT:
        return 0;
    default:
        return -1;
    }
}

int32_t fl_trt_engine_io_shape(const FlTrtEngine *engine, const char *name, int64_t *dims,
                               int32_t capacity) {
    nvinfer1::Dims d = engine->engine->getTensorShape(name);
    if (d.nbDims < 0) {
        return -1;
    }
    for (int32_t i = 0; i < d.nbDims && i < capacity; ++i) {
        dims[i] = d.d[i];
    }
    return d.nbDims;
}

int32_t fl_trt_engine_io_type(const FlTrtEngine *engine, const char *name) {
    return fl_type(engine->engine->getTensorDataType(name));
}

FlTrtContext *fl_trt_context_create(FlTrtEngine *engine) {
    clear_error();
    return guarded<FlTrtContext>(
        [&](FlTrtContext &c) {
            c.context.reset(engine->engine->createExecutionContext());
            return c.context != nullptr;
        },
        "createExecutionContext failed");
}

void fl_trt_context_destroy(FlTrtContext *context) { delete context; }

int32_t fl_trt_context_set_address(FlTrtContext *context, const char *name, void *device) {
    clear_error();
    if (!context->context->setTensorAddress(name, device)) {
        return fail(FL_ERR_TENSORRT, "setTensorAddress refused", name);
    }
    return FL_OK;
}

int32_t fl_trt_context_enqueue(FlTrtContext *context, void *stream) {
    clear_error();
    if (!context->context->enqueueV3(static_cast<cudaStream_t>(stream))) {
        return fail(FL_ERR_TENSORRT, "enqueueV3 failed");
    }
    return FL_OK;
}

int32_t fl_trt_build(const void *onnx, size_t onnx_bytes, const FlTrtBuildOptions *options,
                     FlTrtLogFn log, void *user, FlTrtBlob **plan) {
    clear_error();
    *plan = nullptr;
    if (onnx == nullptr || options == nullptr) {
        return fail(FL_ERR_ARGUMENT, "no model or no options");
    }
    try {
        Logger &log_to = logger(log, user);
        std::unique_ptr<nvinfer1::IBuilder> builder(nvinfer1::createInferBuilder(log_to));
        if (!builder) {
            return fail(FL_ERR_TENSORRT, "createInferBuilder failed");
        }
        std::unique_ptr<nvinfer1::INetworkDefinition> network(builder->createNetworkV2(0U));
        std::unique_ptr<nvonnxparser::IParser> parser(nvonnxparser::createParser(*network, log_to));
        if (!network || !parser) {
            return fail(FL_ERR_TENSORRT, "cannot create the network or the ONNX parser");
        }
        if (!parser->parse(onnx, onnx_bytes)) {
            std::string why = "the ONNX parser refused the model";
            for (int32_t i = 0; i < parser->getNbErrors(); ++i) {
                why += "; ";
                why += parser->getError(i)->desc();
            }
            return fail(FL_ERR_TENSORRT, why.c_str());
        }
        std::unique_ptr<nvinfer1::IBuilderConfig> config(builder->createBuilderConfig());
        if (!config) {
            return fail(FL_ERR_TENSORRT, "createBuilderConfig failed");
        }
        if (options->fp16 == 0 && options->int8 == 0) {
            // FP32 means FP32: TF32 (on by default from Ampere, the Orin
            // included) would move scores away from the CPU engines'.
            config->clearFlag(nvinfer1::BuilderFlag::kTF32);
        }
        if (options->workspace_bytes > 0) {
            config->setMemoryPoolLimit(nvinfer1::MemoryPoolType::kWORKSPACE,
                                       options->workspace_bytes);
        }
#if NV_TENSORRT_MAJOR < 11
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
        std::unique_ptr<CacheCalibrator> calibrator;
        if (options->fp16 != 0) {
            config->setFlag(nvinfer1::BuilderFlag::kFP16);
        }
        if (options->int8 != 0) {
            // A Q/DQ model needs the flag only; a plain one, the cache too.
            config->setFlag(nvinfer1::BuilderFlag::kINT8);
            if (options->calibration_cache != nullptr && options->calibration_cache_bytes > 0) {
                calibrator = std::make_unique<CacheCalibrator>(options->calibration_cache,
                                                               options->calibration_cache_bytes);
                config->setInt8Calibrator(calibrator.get());
            }
        }
#pragma GCC diagnostic pop
#else
        // TensorRT 11 builds strongly typed networks only: precision is
        // the model's own (an FP16 export, or Q/DQ nodes for INT8).
        (void)options->fp16;
        (void)options->int8;
#endif
        std::unique_ptr<nvinfer1::IHostMemory> memory(
            builder->buildSerializedNetwork(*network, *config));
        if (!memory) {
            if (last_error.empty()) {
                fail(FL_ERR_TENSORRT, "buildSerializedNetwork failed");
            }
            return FL_ERR_TENSORRT;
        }
        auto blob = std::make_unique<FlTrtBlob>();
        blob->memory = std::move(memory);
        *plan = blob.release();
        return FL_OK;
    } catch (const std::exception &e) {
        return fail(FL_ERR_TENSORRT, e.what());
    } catch (...) {
        return fail(FL_ERR_TENSORRT, "unknown C++ exception");
    }
}

const void *fl_trt_blob_data(const FlTrtBlob *blob) { return blob->memory->data(); }

size_t fl_trt_blob_size(const FlTrtBlob *blob) { return blob->memory->size(); }

void fl_trt_blob_destroy(FlTrtBlob *blob) { delete blob; }

} // extern "C"
