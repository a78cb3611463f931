"""Weights + summary of the old loops (fit_arrays / fit_general, `old`) or the one trainer (`new`) on tiny synthetic data."""
import hashlib, json, sys
import numpy as np
import torch

MODE = sys.argv[1]  # old | new
rng = np.random.default_rng(1)
K = 4
base = rng.integers(0, 256, size=(K, 60, 60, 3), dtype=np.uint8)
imgs = np.clip(np.repeat(base, 12, 0).astype(int) + rng.integers(-40, 40, size=(K * 12, 60, 60, 3)), 0, 255).astype(np.uint8)
ids = [f"p{i // 12}" for i in range(len(imgs))]
groups = [f"g{i // 2}" for i in range(len(imgs))]
teacher = rng.normal(size=(len(imgs), 128)).astype(np.float32)
teacher[::7] = 0

def h(net):
    m = hashlib.sha256()
    for k, v in sorted(net.state_dict().items()):
        m.update(k.encode()); m.update(v.detach().numpy().tobytes())
    return m.hexdigest()[:16]

def clean(info):
    return {k: v for k, v in info.items() if k not in ("seconds", "history")}

from hybridface.models.preprocess import PreprocessSpec
paper_cases = {
    "A": dict(epochs=3, lr=1e-3, batch_size=16),
    "B": dict(epochs=4, lr=2e-3, batch_size=16, lr_schedule="cosine", augment_on_the_fly=0.5, center_loss=0.1,
              preprocessing=PreprocessSpec(illumination="tan_triggs")),
    "C": dict(epochs=6, lr=1e-2, batch_size=16, patience=1, val_fraction=0.3),
    "D": dict(epochs=2, lr=1e-3, batch_size=100, val_fraction=0.0),
}
gen_cases = {
    "E": dict(teacher=teacher, epochs=3, lr=2e-3, batch_size=16, relation_weight=1.0),
    "F": dict(teacher=teacher, labels=ids, loss="softmax", epochs=3, batch_size=16, arch="wide", batchnorm=True, val_fraction=0.2),
    "G": dict(labels=ids[:18] , loss="arcface", epochs=3, batch_size=8, n=18),
    "H": dict(teacher=teacher, labels=[x if i % 3 else None for i, x in enumerate(ids)], loss="cosface", epochs=2,
              batch_size=16, augment=False, center_teacher=False, distill_weight=0.5, relation_weight=0.5),
}
out = {}
torch.manual_seed(123)
from hybridface.models.compressed import CompressedVGGFace
init = CompressedVGGFace(3).state_dict()
gen_cases["I"] = dict(teacher=teacher, labels=ids, loss="softmax", epochs=2, batch_size=16, init_state=init, relation_weight=1.0)
if MODE == "old":
    from hybridface.training.train import fit_arrays
    from hybridface.training.distill import fit_general
    for k, c in paper_cases.items():
        net, info = fit_arrays(imgs, ids, groups, progress=False, threads=1, **c)
        out[k] = [h(net), clean(info), [round(r["loss"], 6) for r in info["history"]]]
    for k, c in gen_cases.items():
        c = dict(c); n = c.pop("n", len(imgs))
        if "teacher" in c: c["teacher"] = c["teacher"][:n]
        net, info = fit_general(imgs[:n], progress=False, threads=1, **c)
        out[k] = [h(net), clean(info), [round(r["loss"], 6) for r in info["history"]]]
else:
    from hybridface.training.trainer import TrainConfig, train
    for k, c in paper_cases.items():
        c = dict(c)
        p = c.pop("augment_on_the_fly", 0.0)
        if "lr_schedule" in c: c["schedule"] = c.pop("lr_schedule")
        cfg = TrainConfig.paper(augment="paper" if p else "none", augment_p=p, threads=1, progress=False, **c)
        r = train(cfg, imgs, labels=ids, groups=groups)
        info = {"identities": list(r.identities), "num_train": r.num_train, "num_val": r.num_val, "best_epoch": r.best_epoch,
                "epochs_run": r.epochs_run, "val_accuracy": r.val_accuracy, "train_accuracy": r.train_accuracy}
        out[k] = [h(r.net), info, [round(x["loss"], 6) for x in r.history]]
    for k, c in gen_cases.items():
        c = dict(c); n = c.pop("n", len(imgs))
        t = c.pop("teacher", None); lab = c.pop("labels", None); init = c.pop("init_state", None)
        if "augment" in c: c["augment"] = "strong" if c["augment"] else "none"
        r = train(TrainConfig.general(threads=1, progress=False, **c), imgs[:n], teacher=None if t is None else t[:n],
                  labels=lab, init_state=init)
        out[k] = [h(r.net), clean(r.summary()), [round(x["loss"], 6) for x in r.history]]
print(json.dumps(out, indent=1, default=str))
