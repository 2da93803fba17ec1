"""Export, quantise, evaluate, draw, write the model card and sign the bundle."""
import json
import os
import shutil
import subprocess
import time

import numpy as np
import torch

from . import data, metrics, nets, report, train

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
OPSET = 17
# tract and onnxruntime may round a quantised value one step apart.
INT8_TOLERANCE = 0.01
CALIBRATION = 300
SIDE = 256
HEAT = 32
# Head CT series for the haemorrhage operating point: the daemon scores a
# series by the maximum over its slices, so its threshold is chosen on series.
SERIES_SLICES = 24
SERIES_PER_CLASS = 50
SERIES_SEEDS = {"val": 7000, "test": 8000}
CODES = {
    "pneumothorax": ("36118008", "Pneumothorax", "RID5352", "pneumothorax", ("CR", "DX")),
    "effusion": ("60046008", "Pleural effusion", "RID34539", "pleural effusion", ("CR", "DX")),
    "hemorrhage": ("1386000", "Intracranial hemorrhage", "RID4700", "intracranial hemorrhage", ("CT",)),
}


def export(model, path):
    model.eval()
    torch.onnx.export(nets.Exported(model), torch.zeros(1, 1, SIDE, SIDE), path, opset_version=OPSET,
                      input_names=["image"], output_names=["logits", "heatmap"], dynamo=False)


def quantise(fp32, path, calibration):
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{"image": calibration[i:i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self.items, None)

    quantize_static(fp32, path, Reader(), quant_format=QuantFormat.QDQ, op_types_to_quantize=["Conv"],
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, per_channel=True)


def ort_session(path):
    import onnxruntime as ort
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    return ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])


def ort_predict(sess, x):
    logits, heats = [], []
    for i in range(len(x)):
        lo, he = sess.run(None, {"image": x[i:i + 1]})
        logits.append(lo)
        heats.append(he)
    return np.concatenate(logits), np.concatenate(heats)


def ort_latency_ms(sess, x, runs=50):
    sess.run(None, {"image": x[:1]})
    times = []
    for i in range(runs):
        t = time.perf_counter()
        sess.run(None, {"image": x[i % len(x):i % len(x) + 1]})
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def sha256(path):
    import hashlib
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def run(args, sets, models, seconds, started, log):
    work, out = args.work, args.out
    tv, te = sets["val"], sets["test"]
    meta = sets["train"]["meta"]

    log("exporting the student (and the teacher, for timing) to ONNX")
    onnx_dir = os.path.join(work, "onnx")
    os.makedirs(onnx_dir, exist_ok=True)
    student_onnx = os.path.join(onnx_dir, "model.onnx")
    int8_onnx = os.path.join(onnx_dir, "model.int8.onnx")
    teacher_onnx = os.path.join(onnx_dir, "teacher.onnx")
    export(models["student"], student_onnx)
    export(models["teacher"], teacher_onnx)
    log("quantising the student to INT8 (QDQ, Conv only, per channel)")
    quantise(student_onnx, int8_onnx, tv["x"][::max(1, len(tv["x"]) // CALIBRATION)][:CALIBRATION])

    log("choosing operating points on the validation split (sensitivity >= 0.90)")
    s_val = ort_predict(ort_session(student_onnx), tv["x"])
    val_student = metrics.evaluate(*s_val, tv, with_ci=False)
    points = {f: v["threshold"] for f, v in val_student.items()}

    log("evaluating on the held-out set")
    results, val_points = {}, {}
    predictions = {
        "teacher": train.predict(models["teacher"], te["x"]),
        "student": ort_predict(ort_session(student_onnx), te["x"]),
        "student_int8": ort_predict(ort_session(int8_onnx), te["x"]),
        "no_distillation": train.predict(models["baseline"], te["x"]),
    }
    for name in ("teacher", "no_distillation"):
        logits, heat = predictions[name]
        predictions[name] = (logits, 1 / (1 + np.exp(-np.clip(heat, -60, 60))))
    for name, (lo, he) in predictions.items():
        if name in ("teacher", "no_distillation"):
            lo_val, he_val = train.predict(models["teacher" if name == "teacher" else "baseline"], tv["x"])
            val_points[name] = {f: v["threshold"] for f, v in metrics.evaluate(lo_val, he_val, tv,
                                                                               with_ci=False).items()}
        else:
            # The daemon applies the manifest's (fp32 student) thresholds to either model.
            val_points[name] = points
        results[name] = metrics.evaluate(lo, he, te, thresholds=val_points[name])
        log(f"{name}: " + ", ".join(f"{f} AUC {v['auc']:.3f} hit {v['hit_rate']:.2f}"
                                     for f, v in results[name].items()))

    latency = {
        "student_ort_ms": ort_latency_ms(ort_session(student_onnx), te["x"]),
        "student_int8_ort_ms": ort_latency_ms(ort_session(int8_onnx), te["x"]),
        "teacher_ort_ms": ort_latency_ms(ort_session(teacher_onnx), te["x"]),
    }
    log(f"onnxruntime latency (2 threads, batch 1): {latency}")

    sizes = {"student_params": nets.params(models["student"]), "teacher_params": nets.params(models["teacher"]),
             "student_onnx_bytes": os.path.getsize(student_onnx), "int8_onnx_bytes": os.path.getsize(int8_onnx),
             "teacher_onnx_bytes": os.path.getsize(teacher_onnx)}
    stage = os.path.join(work, "stage")
    if os.path.exists(stage):
        shutil.rmtree(stage)
    os.makedirs(os.path.join(stage, "golden"))
    shutil.copy(student_onnx, os.path.join(stage, "model.onnx"))
    shutil.copy(int8_onnx, os.path.join(stage, "model.int8.onnx"))
    golden = write_golden(stage, student_onnx, int8_onnx, te)

    x = sets["train"]["x"]
    ref = {"mean": float(x.mean()), "std": float(x.std())}
    edges = np.linspace(-2.0, 2.0, 17)
    hist, _ = np.histogram(np.clip(x, -2.0, 2.0), bins=edges)
    ref["edges"], ref["hist"] = edges.tolist(), (hist / hist.sum()).tolist()

    os.makedirs(out, exist_ok=True)
    report.montage(os.path.join(out, "montage.png"), te, predictions["student"], points)
    metrics_json = {k: {f: {m: v[m] for m in ("auc", "auc_ci", "sensitivity", "specificity", "hit_rate")}
                        for f, v in r.items()} for k, r in results.items()}
    full = {"results": results, "operating_points": val_points, "latency": latency, "sizes": sizes,
            "training_seconds": seconds, "seed": args.seed, "sets": {k: len(v["x"]) for k, v in sets.items()},
            "generator": meta["generator"],
            "recipe_seconds": time.time() - started + args.cached_data_seconds
            + sum(v for k, v in seconds.items() if k in args.cached)}
    json.dump(metrics_json, open(os.path.join(out, "metrics.json"), "w"), indent=2)
    json.dump(full, open(os.path.join(work, "report.json"), "w"), indent=2)

    bundle = os.path.join(out, "firstlook-demo.flb")
    real = None
    for attempt in ("first", "final"):
        report.model_card(os.path.join(stage, "MODEL_CARD.md"), full, meta, real)
        write_manifest(os.path.join(stage, "manifest.toml"), meta, points, val_student, ref, golden,
                       full.get("ct_series"))
        sign(stage, bundle)
        if attempt == "first":
            real = real_images(bundle, work, log)
            for variant, key in (([], "student_tract_ms"), (["--int8"], "student_int8_tract_ms")):
                res = subprocess.run([tool("firstlook-provision"), "bundle", "bench", *variant, bundle],
                                     capture_output=True, text=True, check=True)
                full["latency"][key] = json.loads(res.stdout)["median_ms"]
            log(f"tract latency: student {full['latency']['student_tract_ms']:.2f} ms, "
                f"INT8 {full['latency']['student_int8_tract_ms']:.2f} ms")
            full["real_images"] = real
            series = ct_series_point(bundle, work, log, 2 if args.smoke else SERIES_PER_CLASS)
            full["ct_series"] = series
            points = {**points, "hemorrhage": series["threshold"]}
            json.dump(full, open(os.path.join(work, "report.json"), "w"), indent=2)
    shutil.copy(os.path.join(stage, "MODEL_CARD.md"), os.path.join(out, "MODEL_CARD.md"))
    log(f"signed bundle: {bundle} ({os.path.getsize(bundle)} bytes, sha256 {sha256(bundle)})")
    log(f"recipe finished in {time.time() - started:.0f} s")
    if args.smoke:
        log("smoke run complete: every stage ran (output in the smoke work folder, not models/demo)")


def write_golden(stage, student_onnx, int8_onnx, te):
    sess, sess8 = ort_session(student_onnx), ort_session(int8_onnx)
    cases = []
    picks = [int(np.nonzero(te["labels"][:, k] == 1)[0][0]) for k in range(3) if te["labels"][:, k].any()]
    picks.append(int(np.nonzero(te["labels"].sum(1) == 0)[0][0]))
    for n, i in enumerate(picks):
        x = te["x"][i:i + 1]
        lo, he = sess.run(None, {"image": x})
        lo8, he8 = sess8.run(None, {"image": x})
        names = [f"golden/case{n}_input.npy", f"golden/case{n}_logits.npy", f"golden/case{n}_heatmap.npy",
                 f"golden/case{n}_int8_logits.npy", f"golden/case{n}_int8_heatmap.npy"]
        for name, arr in zip(names, (x, lo, he, lo8, he8)):
            np.save(os.path.join(stage, name), arr.astype(np.float32))
        cases.append(names)
    return cases


def toml_list(values):
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def ct_series(bundle, work, first_seed, n):
    """(max haemorrhage logit, label) of `n` normal and `n` haemorrhage phantom
    head CT series, scored through the daemon's own path (`bundle try`)."""
    scores, labels = [], []
    for label, extra in ((0, []), (1, ["--finding", "hemorrhage"])):
        for seed in range(first_seed, first_seed + n):
            folder = os.path.join(work, "series", f"{seed}-{label}-{SERIES_SLICES}")
            if not os.path.isdir(folder):
                subprocess.run([tool("firstlook-phantom"), "--kind", "ct", "--seed", str(seed), "--count",
                                str(SERIES_SLICES), *extra, "--out", folder + ".tmp"], check=True,
                               stdout=subprocess.DEVNULL)
                os.replace(folder + ".tmp", folder)
            files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
            res = subprocess.run([tool("firstlook-provision"), "bundle", "try", "--json", bundle, *files],
                                 capture_output=True, text=True, check=True)
            scores.append(max(json.loads(line)["findings"]["hemorrhage"]["logit"]
                              for line in res.stdout.splitlines()))
            labels.append(label)
    return np.array(scores), np.array(labels)


def sens_spec(scores, labels, threshold):
    return {"sensitivity": float((scores[labels == 1] > threshold).mean()),
            "specificity": float((scores[labels == 0] <= threshold).mean()),
            "positives": int((labels == 1).sum()), "negatives": int((labels == 0).sum())}


def ct_series_point(bundle, work, log, n):
    """The haemorrhage threshold chosen on validation series (sensitivity >=
    0.90 under the max-over-slices rule), and how it does on held-out series."""
    log(f"choosing the haemorrhage operating point on {2 * n} validation head CT series of {SERIES_SLICES} slices")
    vs, vl = ct_series(bundle, work, SERIES_SEEDS["val"], n)
    threshold = metrics.threshold_for_sensitivity(vs, vl)
    ts, tl = ct_series(bundle, work, SERIES_SEEDS["test"], n)
    out = {"threshold": threshold, "slices": SERIES_SLICES, "per_class": n, "seeds": SERIES_SEEDS,
           "val": sens_spec(vs, vl, threshold), "test": sens_spec(ts, tl, threshold),
           "test_auc": float(metrics.auc(ts, tl))}
    log(f"series threshold {threshold:.3f}: validation {out['val']}, held-out {out['test']}")
    return out


def write_manifest(path, meta, points, student, ref, golden, series=None):
    p = meta["pipelines"]
    lines = [
        "format = 1",
        'name = "firstlook-demo"',
        'version = "0.1.0"',
        "clinical_use = false",
        'intended_use = "DEMONSTRATION ONLY - NOT FOR CLINICAL USE. Trained only on synthetic phantoms; '
        'it shows how firstlook runs, traces and reports a model. It must never inform care."',
        f'training_data = "Synthetic phantoms only: {meta["generator"]}, training arrays seeds {meta["seed"]} '
        f'(train), {meta["seed"] + 1} (validation), {meta["seed"] + 2} (held-out). No patient data."',
        'model_card = "MODEL_CARD.md"',
        "",
        "[applicability]",
        'modalities = ["CR", "DX", "CT"]',
        'body_parts = ["CHEST", "HEAD", "BRAIN"]',
        "",
    ]
    for modalities, route in ((["CR", "DX"], p["chest"]), (["CT"], p["head"])):
        w = route["window"]
        lines += ["[[preprocessing]]", f"modalities = {toml_list(modalities)}", f'window = "{w["window"]}"']
        if w["window"] == "percentile":
            lines += [f"percentile_low = {w['percentile_low']}", f"percentile_high = {w['percentile_high']}"]
        else:
            lines += [f"center = {float(w['center'])}", f"width = {float(w['width'])}"]
        lines += [f"invert_monochrome1 = {str(route['invert_monochrome1']).lower()}",
                  f"resize = {toml_list(route['resize'])}",
                  f"normalize_mean = {route['normalize_mean']}", f"normalize_std = {route['normalize_std']}", ""]
    lines += ["[[inputs]]", 'name = "image"', f"shape = [1, 1, {SIDE}, {SIDE}]", 'dtype = "f32"', "",
              "[[outputs]]", 'name = "logits"', "shape = [1, 3]", 'dtype = "f32"', "",
              "[[outputs]]", 'name = "heatmap"', f"shape = [1, 3, {HEAT}, {HEAT}]", 'dtype = "f32"', ""]
    for k, finding in enumerate(data.FINDINGS):
        sct, meaning, rid, rmeaning, modalities = CODES[finding]
        r = student[finding]
        chosen_on = "synthetic validation split, sensitivity >= 0.90"
        if finding == "hemorrhage" and series:
            r = series["val"]
            chosen_on = (f"synthetic validation head CT series ({series['slices']} slices, max over slices), "
                         "sensitivity >= 0.90")
        lines += ["[[findings]]", f'id = "{finding}"', f"output_index = {k}", f'display = "{meaning}"',
                  f"modalities = {toml_list(list(modalities))}", "urgent = true",
                  f'code = {{ scheme = "SCT", value = "{sct}", meaning = "{meaning}" }}',
                  f'radlex = {{ scheme = "RADLEX", value = "{rid}", meaning = "{rmeaning}" }}',
                  f"threshold = {points[finding]!r}",
                  f'operating_point = {{ sensitivity = {r["sensitivity"]:.4f}, specificity = {r["specificity"]:.4f}, '
                  f'chosen_on = "{chosen_on}" }}', ""]
    lines += ["[aggregation]", 'rule = "max"', "", "[reference_stats]", f"mean = {ref['mean']!r}",
              f"std = {ref['std']!r}", f"histogram_edges = {toml_list(ref['edges'])}",
              f"histogram = {toml_list(ref['hist'])}", "", "[golden]", "tolerance_abs = 0.001",
              f"tolerance_abs_int8 = {INT8_TOLERANCE}", ""]
    for names in golden:
        lines += ["[[golden.cases]]", f'input = "{names[0]}"', f"expected = {toml_list(names[1:3])}",
                  f"expected_int8 = {toml_list(names[3:5])}", ""]
    open(path, "w").write("\n".join(lines))


def sign(stage, bundle):
    key = os.path.join(ROOT, "models", "demo", "keys", "demo-vendor-TEST-KEY-NOT-SECRET.secret")
    subprocess.run([tool("firstlook-provision"), "bundle", "sign", "--key", key, "--dir", stage, "--out",
                    bundle + ".tmp"], check=True)
    os.replace(bundle + ".tmp", bundle)


def tool(name):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", name)


def real_images(bundle, work, log):
    """Scores of the student on real images shipped in pydicom-data, through firstlook's own Rust path."""
    from pydicom.data import get_testdata_file
    files = {"RG1_UNCR.dcm (real PA chest radiograph, MONOCHROME1)": "RG1_UNCR.dcm"}
    for n in ("693_UNCR.dcm", "693_UNCI.dcm", "693_J2KR.dcm", "693_J2KI.dcm"):
        files[f"{n} (real head CT slice)"] = n
    out = []
    for label, name in files.items():
        path = get_testdata_file(name, download=False)
        if path is None:
            log(f"real image {name} not found in pydicom-data; skipped")
            continue
        res = subprocess.run([tool("firstlook-provision"), "bundle", "try", "--json", bundle, path],
                             capture_output=True, text=True)
        if res.returncode != 0:
            log(f"bundle try {name} failed: {res.stderr.strip()}")
            out.append({"image": label, "error": res.stderr.strip().splitlines()[-1]})
            continue
        out.append({"image": label, **json.loads(res.stdout)})
    return out
