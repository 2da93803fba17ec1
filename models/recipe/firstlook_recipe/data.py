"""Training arrays from firstlook-phantom (the one generator), loaded as tensors."""
import json
import os
import subprocess

import numpy as np

FINDINGS = ["pneumothorax", "effusion", "hemorrhage"]
# Images of these kinds are scored for each finding (per-finding populations).
POPULATION = {"pneumothorax": ("cr", "dx"), "effusion": ("cr", "dx"), "hemorrhage": ("ct",)}


def generate(phantom, out, seed, count):
    if not os.path.exists(os.path.join(out, "meta.json")):
        subprocess.run([phantom, "training", "--seed", str(seed), "--count", str(count), "--out", out],
                       check=True, stdout=subprocess.DEVNULL)
    return load(out)


def load(folder):
    meta = json.load(open(os.path.join(folder, "meta.json")))
    images = np.load(os.path.join(folder, "images.npy"))
    masks = np.load(os.path.join(folder, "masks.npy"))
    labels = np.load(os.path.join(folder, "labels.npy"))
    kinds = np.array([s["kind"] for s in meta["samples"]])
    return {"meta": meta, "images": images, "masks": masks, "labels": labels, "kinds": kinds}


def normalise(images, meta):
    p = meta["pipelines"]["chest"]
    assert p["normalize_mean"] == meta["pipelines"]["head"]["normalize_mean"]
    assert p["normalize_std"] == meta["pipelines"]["head"]["normalize_std"]
    return (images - p["normalize_mean"]) / p["normalize_std"]
