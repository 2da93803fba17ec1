SUMMARY = "The firstlook appliance: firstlookd, firstlook-provision and what they need"
DESCRIPTION = "A console-only systemd image for the edge box cabled to a scanner: \
               firstlookd (DICOM ingest, spool, triage, forwarding) as a service, \
               firstlook-provision for the field engineer, an SSH server to reach \
               the box, and on Tegra machines the CUDA and TensorRT runtime."
LICENSE = "MIT"

inherit core-image features_check

# firstlookd is a systemd unit (sd_notify, watchdog, hardening).
REQUIRED_DISTRO_FEATURES = "systemd"

# The field engineer provisions the box over SSH (firstlook-provision
# config check, set-password, bundle verify|try); no debug-tweaks, no
# empty root password.
IMAGE_FEATURES += "ssh-server-openssh"

# ca-certificates: TLS to PACS, the RIS and the audit repository is checked
# against the site's CAs and the system's. tzdata: DICOM dates and times are
# the site's local time. smartmontools (meta-oe): the health of the disk under
# the durable spool.
IMAGE_INSTALL += "\
    firstlook \
    firstlook-provision \
    ca-certificates \
    tzdata \
    smartmontools \
    ${FIRSTLOOK_GPU_RUNTIME} \
"

# TensorRT (libnvinfer, libnvonnxparser), the CUDA runtime and the Tegra CUDA
# driver: firstlook's tensorrt build pulls them in through its run-time
# dependencies; listed here so the image says what it carries.
FIRSTLOOK_GPU_RUNTIME ?= ""
FIRSTLOOK_GPU_RUNTIME:tegra ?= "tensorrt-core tensorrt-plugins cuda-cudart tegra-libraries-cuda"

# Room for the spool beyond the packages (in KiB; the spool's watermarks in
# firstlook.toml decide how much of the disk it may use).
IMAGE_ROOTFS_EXTRA_SPACE = "1048576"
