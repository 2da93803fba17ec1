"""Supervised teacher, distilled student, and the no-distillation baseline."""
import time

import numpy as np
import torch
from torch import nn

F = nn.functional


def batches(n, batch, rng):
    order = rng.permutation(n)
    for i in range(0, n - batch + 1, batch):
        yield order[i:i + batch]


def heat_loss(heat_logits, masks):
    # Mask cells are area fractions; any coverage counts as positive.
    target = (masks > 0.02).float()
    weight = 1.0 + 8.0 * target
    return F.binary_cross_entropy_with_logits(heat_logits, target, weight=weight)


def fit(model, images, labels, masks, steps, batch, lr, seed, teacher_out=None, use_masks=True, log=print,
        name="model"):
    """Trains `model`. With `teacher_out` (logits, heat logits), distils from it."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.15)
    model.train()
    step, started, n = 0, time.time(), len(images)
    while step < steps:
        for idx in batches(n, batch, rng):
            if step >= steps:
                break
            x = torch.from_numpy(images[idx])
            y = torch.from_numpy(labels[idx])
            m = torch.from_numpy(masks[idx])
            if teacher_out is None:
                # Horizontal flips: findings occur on either side.
                flip = torch.from_numpy(rng.random(len(idx)) < 0.5)
                x = torch.where(flip[:, None, None, None], x.flip(-1), x)
                m = torch.where(flip[:, None, None, None], m.flip(-1), m)
            logits, heat = model(x)
            loss = F.binary_cross_entropy_with_logits(logits, y)
            if teacher_out is not None:
                t_logits = torch.from_numpy(teacher_out[0][idx])
                t_heat = torch.from_numpy(teacher_out[1][idx])
                T = 2.0
                soft = F.binary_cross_entropy_with_logits(logits / T, torch.sigmoid(t_logits / T))
                maps = F.mse_loss(torch.sigmoid(heat), torch.sigmoid(t_heat))
                loss = 0.3 * loss + 0.7 * soft * T * T + 4.0 * maps
            elif use_masks:
                loss = loss + heat_loss(heat, m)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            if step % 100 == 0 or step == steps:
                log(f"{name}: step {step}/{steps} loss {loss.item():.4f} ({time.time() - started:.0f} s)")
    model.eval()
    return time.time() - started


@torch.no_grad()
def predict(model, images, batch=64):
    model.eval()
    logits, heats = [], []
    for i in range(0, len(images), batch):
        lo, he = model(torch.from_numpy(images[i:i + batch]))
        logits.append(lo.numpy())
        heats.append(he.numpy())
    return np.concatenate(logits), np.concatenate(heats)
