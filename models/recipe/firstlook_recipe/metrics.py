"""AUC with bootstrap CIs, operating points, Wilson intervals, heatmap hit rate."""
import math

import numpy as np

from .data import FINDINGS, POPULATION


def auc(scores, labels):
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    order = np.argsort(np.concatenate([pos, neg]), kind="mergesort")
    ranks = np.empty(len(order))
    allv = np.concatenate([pos, neg])[order]
    # Average ranks for ties.
    i = 0
    while i < len(allv):
        j = i
        while j + 1 < len(allv) and allv[j + 1] == allv[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2.0 + 1.0
        i = j + 1
    return float((ranks[:len(pos)].sum() - len(pos) * (len(pos) + 1) / 2.0) / (len(pos) * len(neg)))


def auc_ci(scores, labels, rounds=1000, seed=0):
    rng = np.random.default_rng(seed)
    n, values = len(scores), []
    for _ in range(rounds):
        idx = rng.integers(0, n, n)
        a = auc(scores[idx], labels[idx])
        if not math.isnan(a):
            values.append(a)
    if not values:
        return [float("nan"), float("nan")]
    return [float(np.percentile(values, 2.5)), float(np.percentile(values, 97.5))]


def wilson(k, n, z=1.96):
    if n == 0:
        return [float("nan"), float("nan")]
    p = k / n
    d = 1 + z * z / n
    c = (p + z * z / (2 * n)) / d
    h = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / d
    return [max(0.0, c - h), min(1.0, c + h)]


def threshold_for_sensitivity(scores, labels, target=0.90):
    """The highest threshold whose sensitivity is at least `target`."""
    pos = np.sort(scores[labels == 1])
    if len(pos) == 0:
        return 0.0
    # Rounded first: (1 - 0.9) * 20 is 1.999... in floating point, which
    # would keep one positive too many above the threshold.
    k = int(math.floor(round((1 - target) * len(pos), 9)))
    return float(pos[min(k, len(pos) - 1)]) - 1e-6


def hit(heat, mask):
    """Whether the heatmap's peak falls in the true region (one cell of slack)."""
    r, c = np.unravel_index(np.argmax(heat), heat.shape)
    lo_r, lo_c = max(r - 1, 0), max(c - 1, 0)
    return bool(mask[lo_r:r + 2, lo_c:c + 2].max() > 0)


def population(data, finding):
    return np.isin(data["kinds"], POPULATION[finding])


def evaluate(logits, heats, data, thresholds=None, with_ci=True):
    out = {}
    for k, finding in enumerate(FINDINGS):
        sel = population(data, finding)
        s, y = logits[sel, k], data["labels"][sel, k].astype(int)
        t = thresholds[finding] if thresholds else threshold_for_sensitivity(s, y)
        tp, fn = int(((s > t) & (y == 1)).sum()), int(((s <= t) & (y == 1)).sum())
        tn, fp = int(((s <= t) & (y == 0)).sum()), int(((s > t) & (y == 0)).sum())
        pos_idx = np.nonzero(sel & (data["labels"][:, k] == 1))[0]
        hits = [hit(heats[i, k], data["masks"][i, k]) for i in pos_idx]
        out[finding] = {
            "auc": auc(s, y),
            "auc_ci": auc_ci(s, y) if with_ci else None,
            "threshold": t,
            "sensitivity": tp / max(tp + fn, 1),
            "sensitivity_ci": wilson(tp, tp + fn),
            "specificity": tn / max(tn + fp, 1),
            "specificity_ci": wilson(tn, tn + fp),
            "hit_rate": float(np.mean(hits)) if hits else float("nan"),
            "positives": tp + fn,
            "negatives": tn + fp,
        }
    return out
