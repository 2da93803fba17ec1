"""One command from nothing to the signed demo bundle.

    models/recipe/build            (see models/recipe/README.md)

Stages keep their outputs in models/recipe/work/ and are reused when present,
so a later stage can be re-run without retraining; `--fresh` starts over.
Everything is deterministic given --seed (torch on CPU, fixed thread count).
"""
import argparse
import json
import os
import shutil
import time

import numpy as np
import torch

from . import data, nets, train

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROOT = os.path.dirname(os.path.dirname(HERE))


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def parse():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--work", default=os.path.join(HERE, "work"))
    p.add_argument("--out", default=os.path.join(ROOT, "models", "demo"))
    p.add_argument("--train", type=int, default=3000)
    p.add_argument("--val", type=int, default=1000)
    p.add_argument("--test", type=int, default=1500)
    p.add_argument("--teacher-steps", type=int, default=1400)
    p.add_argument("--student-steps", type=int, default=1500)
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--fresh", action="store_true")
    p.add_argument("--smoke", action="store_true", help="a few steps on a few images; writes nothing under --out")
    return p.parse_args()


def tool(name):
    target = os.environ.get("CARGO_TARGET_DIR", os.path.join(ROOT, "target"))
    return os.path.join(target, "release", name)


def trained(path, model, fit, cached, name):
    if os.path.exists(path):
        model.load_state_dict(torch.load(path))
        model.eval()
        cached.add(name)
        return json.load(open(path + ".json"))["seconds"]
    seconds = fit(model)
    torch.save(model.state_dict(), path)
    json.dump({"seconds": seconds}, open(path + ".json", "w"))
    return seconds


def main():
    args = parse()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    if args.smoke:
        args.train, args.val, args.test = 40, 20, 20
        args.teacher_steps = args.student_steps = 3
        args.batch = 4
        args.work = os.path.join(args.work, "smoke")
        args.out = os.path.join(args.work, "demo")
        args.fresh = True
    if args.fresh and os.path.exists(args.work):
        shutil.rmtree(args.work)
    os.makedirs(args.work, exist_ok=True)
    # Cached stages are reused only for the parameters they were made with.
    params = {k: getattr(args, k) for k in ("seed", "train", "val", "test", "teacher_steps", "student_steps",
                                            "batch")}
    params_path = os.path.join(args.work, "params.json")
    if os.path.exists(params_path) and json.load(open(params_path)) != params:
        raise SystemExit(f"{args.work} was made with {json.load(open(params_path))}; run with --fresh")
    json.dump(params, open(params_path, "w"))
    phantom = tool("firstlook-phantom")
    started = time.time()

    log("generating synthetic training, validation and held-out sets with firstlook-phantom")
    sets = {}
    data_seconds_path = os.path.join(args.work, "data_seconds.json")
    data_cached = os.path.exists(data_seconds_path)
    data_started = time.time()
    for name, seed, count in [("train", args.seed * 1000 + 1, args.train), ("val", args.seed * 1000 + 2, args.val),
                              ("test", args.seed * 1000 + 3, args.test)]:
        sets[name] = data.generate(phantom, os.path.join(args.work, name), seed, count)
        sets[name]["x"] = data.normalise(sets[name]["images"], sets[name]["meta"]).astype(np.float32)
    tr = sets["train"]
    if data_cached:
        args.cached_data_seconds = json.load(open(data_seconds_path))["seconds"]
    else:
        json.dump({"seconds": time.time() - data_started}, open(data_seconds_path, "w"))
        args.cached_data_seconds = 0.0

    # Initial weights follow from the seed too.
    torch.manual_seed(args.seed)
    teacher = nets.teacher()
    args.cached = set()
    t_sec = trained(os.path.join(args.work, "teacher.pt"), teacher,
                    lambda m: train.fit(m, tr["x"], tr["labels"], tr["masks"], args.teacher_steps, args.batch, 3e-3,
                                        args.seed, log=log, name="teacher"), args.cached, "teacher")
    log(f"teacher: {nets.params(teacher)} parameters, trained in {t_sec:.0f} s")
    t_out = train.predict(teacher, tr["x"])

    def train_student(name, label, **how):
        """A student from the same seed, trained `how` (with the teacher's outputs, or labels only)."""
        torch.manual_seed(args.seed + 1)
        model = nets.student()
        sec = trained(os.path.join(args.work, f"{name}.pt"), model,
                      lambda m: train.fit(m, tr["x"], tr["labels"], tr["masks"], args.student_steps, args.batch,
                                          4e-3, args.seed + 1, log=log, name=label, **how),
                      args.cached, name)
        return model, sec

    student, s_sec = train_student("student", "student", teacher_out=t_out)
    log(f"student: {nets.params(student)} parameters, distilled in {s_sec:.0f} s")
    baseline, b_sec = train_student("baseline", "no-distillation", use_masks=False)
    log(f"no-distillation student trained in {b_sec:.0f} s")

    from . import package
    package.run(args, sets, {"teacher": teacher, "student": student, "baseline": baseline},
                {"teacher": t_sec, "student": s_sec, "baseline": b_sec}, started, log)


if __name__ == "__main__":
    main()
