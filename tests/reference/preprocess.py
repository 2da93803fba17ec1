#!/usr/bin/env python3
"""Independent reference for firstlook's preprocessing, for the parity tests.

pydicom (with the pylibjpeg decoders) decodes the pixels and applies the
modality LUT and the image's own VOI; numpy does the rest, written from the
definitions in kernels/src/preprocess (not from its code):

  pixel padding  -> replaced by the darkest unpadded modality value
                    (lowest for MONOCHROME2, highest for MONOCHROME1)
  resize         -> per axis: area average when shrinking, bilinear with
                    half-pixel centres (edges clamped) when enlarging;
                    letterbox: scale to fit, centred, round half up
  window         -> per channel: fixed (linear exact, clipped), percentile
                    (numpy linear percentiles of the resized image), or
                    dicom (pydicom apply_voi / apply_windowing, scaled to 0..1)
  MONOCHROME1    -> 1 - v inside the image, padding stays 0
  normalise      -> (v - mean) / std

Usage:
  preprocess.py FILE PIPELINE.json OUT.npy        all frames: F x C x R x C
  preprocess.py --sigmoid IN.dcm OUT.dcm CENTER WIDTH
"""

import json
import math
import sys

import numpy as np
import pydicom
from pydicom.pixels import apply_modality_lut, apply_voi, apply_windowing


def area_weights(n_in, n_out):
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        start, end = o * scale, (o + 1) * scale
        for i in range(int(math.floor(start)), min(int(math.ceil(end)), n_in)):
            overlap = min(end, i + 1) - max(start, i)
            if overlap > 0:
                w[o, i] = overlap / scale
    return w


def bilinear_weights(n_in, n_out):
    scale = n_in / n_out
    w = np.zeros((n_out, n_in))
    for o in range(n_out):
        x = min(max((o + 0.5) * scale - 0.5, 0.0), n_in - 1)
        i = int(math.floor(x))
        t = x - i
        if i + 1 < n_in:
            w[o, i] += 1 - t
            w[o, i + 1] += t
        else:
            w[o, i] = 1.0
    return w


def weights(n_in, n_out):
    return bilinear_weights(n_in, n_out) if n_out > n_in else area_weights(n_in, n_out)


def resize(img, rows, cols):
    h, w = img.shape
    return weights(h, rows) @ img @ weights(w, cols).T


def voi_range(ds):
    """pydicom's output range of apply_windowing for this data set."""
    bits = int(ds.BitsStored)
    if ds.PixelRepresentation == 0:
        lo, hi = 0.0, 2.0**bits - 1
    else:
        lo, hi = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    if "RescaleSlope" in ds and "RescaleIntercept" in ds:
        s, b = float(ds.RescaleSlope), float(ds.RescaleIntercept)
        lo, hi = lo * s + b, hi * s + b
    return lo, hi


def window(values, spec, ds):
    kind = spec["window"]
    if kind == "fixed":
        lo = spec["center"] - spec["width"] / 2
        return np.clip((values - lo) / spec["width"], 0, 1)
    if kind == "percentile":
        lo, hi = np.percentile(values, [spec["low"], spec["high"]])
        return np.clip((values - lo) / (hi - lo), 0, 1)
    if kind == "dicom":
        index = spec.get("index", 0)
        if ds.get("VOILUTSequence"):
            item = ds.VOILUTSequence[index]
            bits = int(item.LUTDescriptor[2])
            return apply_voi(values, ds, index).astype(np.float64) / (2.0**bits - 1)
        lo, hi = voi_range(ds)
        return (apply_windowing(values.copy(), ds, index) - lo) / (hi - lo)
    raise SystemExit(f"unknown window {kind!r}")


def padded(raw, ds):
    if "PixelPaddingValue" not in ds:
        return np.zeros(raw.shape, dtype=bool)
    a = int(ds.PixelPaddingValue)
    b = int(ds.get("PixelPaddingRangeLimit", a))
    return (raw >= min(a, b)) & (raw <= max(a, b))


def modality_values(raw, ds):
    """The modality LUT, padding replaced by the darkest unpadded value."""
    values = apply_modality_lut(raw, ds).astype(np.float64)
    pad = padded(raw, ds)
    if pad.any() and not pad.all():
        mono1 = ds.PhotometricInterpretation == "MONOCHROME1"
        values[pad] = values[~pad].max() if mono1 else values[~pad].min()
    return values


def frame_tensor(raw, ds, p):
    values = modality_values(raw, ds)
    rows, cols = p["rows"], p["cols"]
    h, w = values.shape
    if p["letterbox"]:
        scale = min(rows / h, cols / w)
        in_rows = min(max(int(math.floor(h * scale + 0.5)), 1), rows)
        in_cols = min(max(int(math.floor(w * scale + 0.5)), 1), cols)
    else:
        in_rows, in_cols = rows, cols
    top, left = (rows - in_rows) // 2, (cols - in_cols) // 2
    small = resize(values, in_rows, in_cols)
    invert = p["invert_monochrome1"] and ds.PhotometricInterpretation == "MONOCHROME1"
    out = np.zeros((len(p["channels"]), rows, cols))
    for c, spec in enumerate(p["channels"]):
        v = window(small, spec, ds)
        if invert:
            v = 1.0 - v
        out[c, top : top + in_rows, left : left + in_cols] = v
    return ((out - p["mean"]) / p["std"]).astype(np.float32)


def main(argv):
    if argv[0] == "--sigmoid":
        src, dst, center, width = argv[1:5]
        ds = pydicom.dcmread(src)
        ds.VOILUTFunction = "SIGMOID"
        ds.WindowCenter = center
        ds.WindowWidth = width
        ds.save_as(dst)
        return
    path, pipeline, out = argv
    p = json.loads(pipeline)
    ds = pydicom.dcmread(path)
    arr = ds.pixel_array
    frames = arr if int(ds.get("NumberOfFrames", 1) or 1) > 1 else arr[np.newaxis]
    np.save(out, np.stack([frame_tensor(f, ds, p) for f in frames]))


if __name__ == "__main__":
    main(sys.argv[1:])
