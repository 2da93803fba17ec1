# nooelint: oelint.var.mandatoryvar.HOMEPAGE - the project has no public home page yet
SUMMARY = "firstlook: DICOM ingest, durable spool, triage and forwarding to PACS"
DESCRIPTION = "firstlookd receives images from a CT or X-ray scanner over DICOM, \
               stores them durably, runs an image model on them (TensorRT on a Jetson, \
               a CPU engine elsewhere) and forwards them with its results to PACS. \
               firstlook-provision is the field engineer's tool: configuration checks, \
               signed model bundles and panel passwords."
SECTION = "console/network"
# The workspace's own licence, as its Cargo.toml states it (the repository has
# no LICENSE file yet). The binaries also link crates.io crates under their
# own licences (mostly "MIT OR Apache-2.0"; Cargo.lock also has BSD-2/3-Clause,
# ISC, Zlib, CC0-1.0, BSL-1.0, Unicode-3.0 and IJG): see README.md, "Licences".
LICENSE = "Apache-2.0"
LIC_FILES_CHKSUM = "file://Cargo.toml;beginline=11;endline=11;md5=2507bd5f0713f05419cd2f22fa06fe62"

# One recipe for both binaries: they are one Cargo workspace with one
# Cargo.lock, and one cargo invocation compiles the shared crates (firstlook,
# firstlook-kernels, tract, the DICOM stack) once instead of twice.
PV = "0.1.0+git"

# Where the source comes from (README.md, "Where the source comes from"):
# by default the committed tip of FIRSTLOOK_GIT_BRANCH of the checkout that
# holds this layer, so that firstlook-crates.inc (generated from that
# checkout's Cargo.lock) and the sources agree. A release build points
# FIRSTLOOK_GIT_URI at the project's server and pins SRCREV; the kas files
# build the working tree instead (externalsrc, FIRSTLOOK_SRC_URI = "").
# FIRSTLOOK_TOPDIR: the checkout that holds this layer (this file is
# yocto/meta-firstlook/recipes-firstlook/firstlook/ in it).
FIRSTLOOK_TOPDIR := "${@os.path.normpath(os.path.join(d.getVar('THISDIR'), '..', '..', '..', '..'))}"
FIRSTLOOK_GIT_URI ??= "${FIRSTLOOK_TOPDIR}"
FIRSTLOOK_GIT_PROTOCOL ??= "file"
FIRSTLOOK_GIT_BRANCH ??= "main"
FIRSTLOOK_SRC_URI ??= "git://${FIRSTLOOK_GIT_URI};protocol=${FIRSTLOOK_GIT_PROTOCOL};branch=${FIRSTLOOK_GIT_BRANCH}"
SRC_URI = "${FIRSTLOOK_SRC_URI}"
SRCREV ?= "${AUTOREV}"

require ${BPN}-crates.inc

inherit cargo cargo-update-recipe-crates systemd useradd

# The product build: no `demo` subcommand (it pulls the phantom generator),
# no e2e test crate. `ort` (ONNX Runtime loaded at run time, only when
# ORT_DYLIB_PATH is set) comes in anyway: firstlook-provision enables it on
# the firstlook library, and one cargo build unifies features.
CARGO_BUILD_FLAGS += "-p firstlook -p firstlook-provision --no-default-features"

# TensorRT engine on Tegra machines (meta-tegra); tract, built in by default,
# is the CPU engine and the fallback. JPEG-LS decoding builds CharLS with cmake.
FIRSTLOOK_GPU_PACKAGECONFIG ?= ""
FIRSTLOOK_GPU_PACKAGECONFIG:tegra ?= "tensorrt"
PACKAGECONFIG ??= "jpegls ${FIRSTLOOK_GPU_PACKAGECONFIG}"
PACKAGECONFIG[jpegls] = "--features firstlook/jpegls,,cmake-native"
PACKAGECONFIG[tensorrt] = "--features firstlook/tensorrt --features firstlook-provision/tensorrt,,tensorrt-core tensorrt-plugins cuda-cudart clang-native,tensorrt-core tensorrt-plugins cuda-cudart tegra-libraries-cuda"

# What kernels/tensorrt-sys/build.rs reads: meta-tegra installs TensorRT's
# headers and libraries in the usual places and CUDA's under
# /usr/local/cuda-${CUDA_VERSION}; bindgen loads clang-native's libclang and
# parses the shim's header for the target.
FIRSTLOOK_CUDA_DIR = "${STAGING_DIR_HOST}${prefix}/local/cuda-${CUDA_VERSION}"
RUSTFLAGS:append = " ${@bb.utils.contains('PACKAGECONFIG', 'tensorrt', '-C link-arg=-Wl,-rpath-link,${FIRSTLOOK_CUDA_DIR}/${baselib}', '', d)}"

do_compile:prepend() {
    if ${@bb.utils.contains('PACKAGECONFIG', 'tensorrt', 'true', 'false', d)}; then
        export TENSORRT_INCLUDE_DIR="${STAGING_INCDIR}"
        export TENSORRT_LIB_DIR="${STAGING_LIBDIR}"
        export CUDA_INCLUDE_DIR="${FIRSTLOOK_CUDA_DIR}/include"
        export CUDA_LIB_DIR="${FIRSTLOOK_CUDA_DIR}/${baselib}"
        export LIBCLANG_PATH="${STAGING_LIBDIR_NATIVE}"
        export BINDGEN_EXTRA_CLANG_ARGS="${HOST_CC_ARCH}${TOOLCHAIN_OPTIONS} --target=${TARGET_SYS}"
    fi
}

# The unit, its Jetson drop-in and the appliance's default configuration are
# single sources in the project tree (daemon/systemd/); the recipe only
# installs them.
do_install:append() {
    install -d ${D}${systemd_system_unitdir}
    install -m 0644 ${S}/daemon/systemd/firstlookd.service ${D}${systemd_system_unitdir}/
    if ${@bb.utils.contains('PACKAGECONFIG', 'tensorrt', 'true', 'false', d)}; then
        install -d ${D}${systemd_system_unitdir}/firstlookd.service.d
        install -m 0644 ${S}/daemon/systemd/firstlookd.service.d/jetson-gpu.conf \
            ${D}${systemd_system_unitdir}/firstlookd.service.d/
    fi

    install -d -m 0750 -g firstlook ${D}${sysconfdir}/firstlook
    install -m 0640 -g firstlook ${S}/daemon/systemd/firstlook.toml ${D}${sysconfdir}/firstlook/

    install -d -m 0750 -o firstlook -g firstlook ${D}${localstatedir}/lib/firstlook
}

# The TensorRT build links meta-tegra's Tegra-specific libraries.
PACKAGE_ARCH:tegra = "${TEGRA_PKGARCH}"

PACKAGES =+ "${PN}-provision"

FILES:${PN} += "${systemd_system_unitdir}/firstlookd.service.d"
FILES:${PN}-provision += "${bindir}/firstlook-provision"
CONFFILES:${PN} = "${sysconfdir}/firstlook/firstlook.toml"

SYSTEMD_PACKAGES = "${PN}"
SYSTEMD_SERVICE:${PN} = "firstlookd.service"
SYSTEMD_AUTO_ENABLE:${PN} = "enable"

# A system user and group `firstlook`; on Tegra also in `video`, the group of
# the GPU's device nodes.
FIRSTLOOK_USER_GROUPS ?= ""
FIRSTLOOK_USER_GROUPS:tegra ?= "--groups video"
USERADD_PACKAGES = "${PN}"
GROUPADD_PARAM:${PN} = "--system firstlook"
USERADD_PARAM:${PN} = "--system --gid firstlook ${FIRSTLOOK_USER_GROUPS} \
                       --home-dir ${localstatedir}/lib/firstlook --no-create-home \
                       --shell ${base_sbindir}/nologin firstlook"
