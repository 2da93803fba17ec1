"""The montage and the model card."""
import numpy as np
from PIL import Image, ImageDraw

from .data import FINDINGS, POPULATION

BANNER = "SYNTHETIC DATA - NOT FOR CLINICAL USE"


def _tile(image, heat, caption, size=224):
    """Grey image with the heatmap in red on top, and a caption."""
    grey = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    rgb = np.stack([grey] * 3, -1).astype(np.float32)
    if heat is not None:
        up = np.kron(heat, np.ones((image.shape[0] // heat.shape[0], image.shape[1] // heat.shape[1])))
        alpha = np.clip(up, 0, 1)[..., None] * 0.4
        rgb = rgb * (1 - alpha) + np.array([255.0, 40.0, 0.0]) * alpha
    tile = Image.fromarray(rgb.astype(np.uint8)).resize((size, size))
    canvas = Image.new("RGB", (size, size + 28), (0, 0, 0))
    canvas.paste(tile, (0, 0))
    ImageDraw.Draw(canvas).text((4, size + 4), caption, fill=(255, 255, 255))
    return canvas


def montage(path, data, prediction, thresholds, per_row=6):
    logits, heats = prediction
    images, labels, kinds = data["images"][:, 0], data["labels"], data["kinds"]
    tiles = []
    for k, finding in enumerate(FINDINGS):
        pop = np.isin(kinds, POPULATION[finding])
        pos = np.nonzero(pop & (labels[:, k] == 1))[0][:4]
        neg = np.nonzero(pop & (labels.sum(1) == 0))[0][:2]
        for i in list(pos) + list(neg):
            p = 1 / (1 + np.exp(-logits[i, k]))
            truth = "positive" if labels[i, k] == 1 else "negative"
            flag = "FLAG" if logits[i, k] > thresholds[finding] else "-"
            caption = f"{finding[:12]} truth {truth}  p={p:.2f} {flag}"
            tile = _tile(images[i], heats[i, k] if labels[i, k] == 1 or p > 0.5 else None, caption)
            if labels[i, k] == 1:
                # Outline of the true region: edges of mask cells that border non-mask cells.
                draw = ImageDraw.Draw(tile)
                m = np.pad(data["masks"][i, k] > 0.05, 1)
                cell = 224 / (m.shape[0] - 2)
                for r, c in zip(*np.nonzero(m)):
                    x0, y0 = (c - 1) * cell, (r - 1) * cell
                    if not m[r - 1, c]:
                        draw.line([x0, y0, x0 + cell, y0], fill=(0, 220, 0))
                    if not m[r + 1, c]:
                        draw.line([x0, y0 + cell, x0 + cell, y0 + cell], fill=(0, 220, 0))
                    if not m[r, c - 1]:
                        draw.line([x0, y0, x0, y0 + cell], fill=(0, 220, 0))
                    if not m[r, c + 1]:
                        draw.line([x0 + cell, y0, x0 + cell, y0 + cell], fill=(0, 220, 0))
            tiles.append(tile)
    rows = (len(tiles) + per_row - 1) // per_row
    w, h = tiles[0].size
    out = Image.new("RGB", (w * per_row, h * rows + 30), (0, 0, 0))
    draw = ImageDraw.Draw(out)
    draw.text((6, 8), f"firstlook demo student on held-out synthetic phantoms. {BANNER}. Red: student heatmap; green outline: true "
                      f"region (heatmap cells).", fill=(255, 220, 0))
    for n, tile in enumerate(tiles):
        out.paste(tile, ((n % per_row) * w, 30 + (n // per_row) * h))
    out.save(path)


def _fmt_ci(v, ci):
    if ci is None:
        return f"{v:.3f}"
    return f"{v:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]"


def model_card(path, full, meta, real):
    r = full["results"]
    s = full["sizes"]
    t = full["training_seconds"]
    lat = full["latency"]
    lines = [
        "# firstlook demo model — model card",
        "",
        f"> **{BANNER}.** This model was trained only on synthetic phantoms drawn by `firstlook-phantom`.",
        "> It exists to show how firstlook loads, verifies, runs, traces and reports a model. It has never seen",
        "> a patient image and must never inform the care of a patient. The bundle says `clinical_use = false`.",
        "",
        "## Intended use",
        "",
        "Demonstration and testing of the firstlook appliance: alerts on the technologist's panel, DICOM results in",
        "PACS, the signed-bundle workflow. Findings: pneumothorax and pleural effusion on chest radiographs (CR/DX),",
        "intracranial haemorrhage on head CT slices (series score = max over slices).",
        "",
        "## Data",
        "",
        f"- Generator: `{meta['generator']}` (Rust, deterministic; the same code the demo scanner and tests use).",
        f"- Training arrays: `firstlook-phantom training` seeds {full['seed'] * 1000 + 1} (train, "
        f"{full['sets']['train']} images), {full['seed'] * 1000 + 2} (validation, {full['sets']['val']}), "
        f"{full['seed'] * 1000 + 3} (held-out test, {full['sets']['test']}). Each set cycles through chest normal, "
        "chest pneumothorax, chest effusion, head normal, head haemorrhage; CT slices are drawn at random heights "
        "(80 % of haemorrhage heads inside the bleed's extent) and labelled positive when at least 30 blood pixels "
        "(512 × 512) are in the slice.",
        "- Radiographs are rendered at a quarter of the 2048 × 2500 detector matrix over the same field of view,",
        "  stored as a scanner would (12–16 bits, MONOCHROME1 or 2), and preprocessed by `firstlook-kernels`",
        "  exactly as the daemon preprocesses an incoming image: area-resize to 256 × 256, window (chest: 0.5–99.5",
        "  percentile; head: brain window 40/80 HU), invert MONOCHROME1, normalise (x − 0.5) / 0.25.",
        "",
        "## Architecture and training",
        "",
        "Both networks share one shape: a strided convolutional trunk (five stages), class logits from average-,",
        "max- and heatmap-max-pooled features, and a 32 × 32 heatmap (one channel per finding) from the 1/8 and",
        "upsampled 1/16 features.",
        "",
        "| | parameters | ONNX size | training on 2 CPU cores |",
        "|---|---:|---:|---:|",
        f"| teacher | {s['teacher_params']:,} | {s['teacher_onnx_bytes'] / 1e6:.2f} MB | {t['teacher']:.0f} s, "
        "labels + masks |",
        f"| student (distilled) | {s['student_params']:,} | {s['student_onnx_bytes'] / 1e6:.2f} MB | "
        f"{t['student']:.0f} s, soft targets (T = 2) + heatmap distillation |",
        f"| student INT8 (QDQ, Conv only) | {s['student_params']:,} | {s['int8_onnx_bytes'] / 1e6:.2f} MB | "
        "per-channel weights, static min-max calibration on 300 validation images |",
        f"| student without distillation | {s['student_params']:,} | — | {t['baseline']:.0f} s, labels only |",
        "",
        f"The whole recipe (data, three trainings, export, quantisation, evaluation, bundle) took about "
        f"{full['recipe_seconds'] / 60:.0f} minutes on this 2-core machine (each stage's time as recorded when it "
        "last ran).",
        "",
        "## Results on the held-out synthetic set",
        "",
        "Per finding, over the images of its modality (chest radiographs for pneumothorax and effusion, head CT",
        "slices for haemorrhage). AUC with a 95 % bootstrap CI (1000 resamples); sensitivity and specificity at",
        "the operating point chosen on the validation split (highest threshold with sensitivity ≥ 0.90), with",
        "Wilson 95 % CIs; heatmap hit rate = fraction of positives whose heatmap peak falls in the true region",
        "(±1 cell of 32 × 32). The INT8 rows use the manifest's thresholds (the fp32 student's), as the daemon",
        "does. Haemorrhage figures in these tables are per slice, at the per-slice operating point; the daemon",
        "scores a series by the maximum over its slices (the manifest's aggregation rule) against the series",
        "operating point below.",
        "",
    ]
    cs = full.get("ct_series")
    if cs:
        lines += [
            "### haemorrhage, per series (the manifest's operating point)",
            "",
            f"Phantom head CT series of {cs['slices']} slices ({cs['per_class']} normal and {cs['per_class']} with",
            "haemorrhage per set), each slice scored through firstlook's own path (`firstlook-provision bundle",
            "try`: decoding, preprocessing, tract), series score = maximum over slices. The threshold is the",
            f"highest with sensitivity ≥ 0.90 on the validation series (seeds from {cs['seeds']['val']}); the",
            f"manifest carries it ({cs['threshold']:.3f} on the logit). Held-out series (seeds from",
            f"{cs['seeds']['test']}):",
            "",
            "| set | sensitivity | specificity | AUC |",
            "|---|---:|---:|---:|",
            f"| validation | {cs['val']['sensitivity']:.2f} | {cs['val']['specificity']:.2f} | — |",
            f"| held-out | {cs['test']['sensitivity']:.2f} | {cs['test']['specificity']:.2f} | "
            f"{cs['test_auc']:.3f} |",
            "",
            f"With {cs['per_class']} series per class these proportions are coarse (one series is "
            f"{100 / cs['per_class']:.0f} points).",
            "",
        ]
    names = [("teacher", "teacher"), ("student", "student"), ("student_int8", "student INT8"),
             ("no_distillation", "student, no distillation")]
    for finding in FINDINGS:
        lines += [f"### {finding}", "", "| model | AUC [95 % CI] | sensitivity [CI] | specificity [CI] | hit rate |",
                  "|---|---|---|---|---:|"]
        for key, label in names:
            v = r[key][finding]
            lines.append(f"| {label} | {_fmt_ci(v['auc'], v['auc_ci'])} | "
                         f"{_fmt_ci(v['sensitivity'], v['sensitivity_ci'])} | "
                         f"{_fmt_ci(v['specificity'], v['specificity_ci'])} | {v['hit_rate']:.2f} |")
        lines += ["", f"Positives / negatives: {r['student'][finding]['positives']} / "
                      f"{r['student'][finding]['negatives']}.", ""]
    d = {f: (r["student"][f], r["no_distillation"][f]) for f in FINDINGS}
    lines += [
        "**What distillation bought here.** The baseline is the same student trained on labels alone: no teacher",
        "and no masks (a student trained on masks without a teacher was not run). On this generator it reaches",
        "about the same AUC (" + ", ".join(f"{f} {d[f][1]['auc']:.3f} vs {d[f][0]['auc']:.3f} distilled" for f in FINDINGS)
        + "): the synthetic findings are easy enough to detect. What it does not learn without the teacher's",
        "maps (or masks) is where the finding is: heatmap hit rate " + ", ".join(
            f"{f} {d[f][1]['hit_rate']:.2f} vs {d[f][0]['hit_rate']:.2f}" for f in FINDINGS)
        + ". A heatmap that points at the wrong place is worse than none on a technologist's panel, so the",
        "distilled student is the one shipped. (An earlier experiment in this project's issue saw a label-only",
        "student stay at chance on haemorrhage; with this generator and architecture that did not reproduce.)",
        "",
        "Machine-readable: `models/demo/metrics.json`. Montage of held-out positives and negatives with the",
        "student's heatmaps: `models/demo/montage.png`.",
        "",
        "## Latency (this machine, 2 cores, batch 1)",
        "",
        "| model | onnxruntime | tract |",
        "|---|---:|---:|",
        f"| student fp32 | {lat['student_ort_ms']:.2f} ms | {lat.get('student_tract_ms', float('nan')):.2f} ms |",
        f"| student INT8 | {lat['student_int8_ort_ms']:.2f} ms | {lat.get('student_int8_tract_ms', float('nan')):.2f} ms |",
        f"| teacher fp32 | {lat['teacher_ort_ms']:.2f} ms | — |",
        "",
        "Measured by the recipe (onnxruntime, 2 intra-op threads, median of 50) and `firstlook-provision bundle",
        "bench` (tract, median of 30); `tests/bench/model` measures both side by side (BENCHMARKS.md).",
        "",
        "## Real images (measured, not assumed)",
        "",
        "The student was run through firstlook's own Rust path (`firstlook-provision bundle try`: DICOM decode,",
        "modality LUT, preprocessing, tract) on real images that ship in the PyPI package `pydicom-data`:",
        "",
    ]
    if real:
        lines += ["| image | pneumothorax p | effusion p | haemorrhage p | flagged |", "|---|---:|---:|---:|---|"]
        for item in real:
            if "error" in item:
                reason = item["error"].split(": ", 1)[-1]
                lines.append(f"| {item['image']} | — | — | — | not scored: {reason} |")
                continue
            f = item["findings"]
            flagged = [k for k, v in f.items() if v["applicable"] and v["positive"]]
            lines.append(f"| {item['image']} | {f['pneumothorax']['probability']:.3f} | "
                         f"{f['effusion']['probability']:.3f} | {f['hemorrhage']['probability']:.3f} | "
                         f"{', '.join(flagged) or 'none'} |")
        lines += ["", "These images carry no ground truth for these findings; the scores show how the model behaves",
                  "outside its synthetic world, which is the reason it must not be used on patients.", ""]
    else:
        lines += ["(not run)", ""]
    lines += [
        "## Limitations",
        "",
        "- Trained and tested only on synthetic phantoms. The held-out numbers above measure how well the student",
        "  separates the generator's own findings; they say nothing about real patients.",
        "- The phantoms are simple: lungs, vessels, heart, ribs and skull are drawn from smooth shapes and noise.",
        "  Real anatomy, pathology, devices, positioning and processing are far more varied.",
        "- Findings are drawn in a small number of typical forms (e.g. lateral/apical pneumothorax only, no",
        "  supine deep-sulcus sign, no loculated effusion, no subarachnoid or intraventricular blood).",
        "- Haemorrhage is scored per slice at 256 × 256; thin or tiny bleeds that cover few pixels are labelled",
        "  positive by the generator but may be invisible at that resolution.",
        "- On the real images above the scores are meaningless as diagnosis: the model has never seen a real",
        "  image, and a flag there (the real head CT slice scores as haemorrhage) shows exactly that.",
        "",
    ]
    open(path, "w").write("\n".join(lines))
