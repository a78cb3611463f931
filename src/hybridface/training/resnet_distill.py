"""Distil a channel-pruned student of the ported dlib ResNet from the teacher (resumable).

A run directory holds everything, so a run can stop and go on across sessions:

* ``data/chips.npy`` (uint8 ``(n, 150, 150, 3)``, aligned by our landmark and chip ports, each
  image taken as the face box) and ``data/teacher.npy`` (the teacher's raw descriptors), written
  chunk by chunk (``data/done.txt`` counts finished rows);
* ``ckpt.pt``: student weights, optimiser, step and RNG state, saved atomically every
  ``save_every`` steps; a rerun resumes from it;
* ``student.onnx`` + ``student.int8.onnx`` + ``card.json`` once the run reaches ``steps``.

Loss: centred cosine ``1 − cos(s − s̄, t − c)`` (``c`` = the teacher's mean descriptor over the
data, ``s̄`` the student's batch mean: the common component all faces share would otherwise hide
the differences, and a pruned student starts with another offset, which the export adds back)
plus ``relation`` × relational loss on the same centred vectors, on
`distill.strong_augment` ed chips (the teacher's target is that of the unaugmented chip), plus,
with ``hint > 0``, ``hint`` × `losses.hint_loss`: the student's residual stream at the end of
each stage against the teacher's on the same augmented chips (the teacher runs alongside), on the
kept stream channels, normalised by the teacher's per-channel variance.

The student: `prune_spec` at ``width`` (inner channels) and ``stream_width`` (residual streams,
default ``width``); ``refit > 0`` refits each conv2 by least squares on that many chips before
training (`refit_conv2`, stream-preserving students only).

    python -m hybridface.training.resnet_distill RUN_DIR --data ../shared/datasets/unlabeled_faces/utkface \
        --faces 4000 --width 0.5 --steps 3000
    python -m hybridface.training.resnet_distill RUN_DIR --data ... --width 0.3 --stream-width 1 --refit 128 --hint 1
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from hybridface.errors import ConfigError, HybridFaceError

log = logging.getLogger(__name__)


def prepare_data(run: Path, files: list[Path], *, chunk: int = 256, threads: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Chips and teacher descriptors of ``files`` under ``run/data`` (resumes where it stopped)."""
    from hybridface.faces.io import load_image
    from hybridface.models.chip import face_chips
    from hybridface.models.landmarks import ShapePredictor
    from hybridface.models.resnet_encoder import ResNetEncoder

    d = run / "data"
    d.mkdir(parents=True, exist_ok=True)
    n = len(files)
    if (d / "done.txt").is_file() and int((d / "done.txt").read_text()) == n:  # finished: read only
        chips, teach = np.load(d / "chips.npy", mmap_mode="r"), np.load(d / "teacher.npy")
        if chips.shape != (n, 150, 150, 3) or teach.shape != (n, 128):
            raise ConfigError(f"{d} holds data for {chips.shape[0]} faces, not {n}; use a new run directory")
        return chips, teach
    mode = "r+" if (d / "chips.npy").is_file() else "w+"
    chips = np.lib.format.open_memmap(d / "chips.npy", mode=mode, dtype=np.uint8, shape=(n, 150, 150, 3))
    teach = np.lib.format.open_memmap(d / "teacher.npy", mode=mode, dtype=np.float32, shape=(n, 128))
    if chips.shape[0] != n:
        raise ConfigError(f"{d} holds data for {chips.shape[0]} faces, not {n}; use a new run directory")
    done = int((d / "done.txt").read_text()) if (d / "done.txt").is_file() else 0
    if done < n:
        sp, teacher = ShapePredictor(), ResNetEncoder(threads=threads)
        for i in range(done, n, chunk):
            imgs = [load_image(f) for f in files[i:i + chunk]]
            boxes = np.array([[0, 0, im.shape[1] - 1, im.shape[0] - 1] for im in imgs], np.float64)
            c = face_chips(imgs, sp.predict(imgs, boxes))
            chips[i:i + len(c)] = c
            teach[i:i + len(c)] = teacher.descriptors(c)
            chips.flush()
            teach.flush()
            (d / "done.txt").write_text(str(i + len(c)))
            log.info("prepared %d / %d faces", i + len(c), n)
    return np.load(d / "chips.npy", mmap_mode="r"), np.load(d / "teacher.npy")


def _save(obj, path: Path) -> None:
    import torch

    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def stage_ends(spec) -> list[int]:
    """Indices of the blocks that end a stage (the next block down-samples, or the last block)."""
    n = len(spec.blocks)
    return [i for i in range(n) if i == n - 1 or spec.blocks[i + 1].down]


def forward_stages(net, x, ends: list[int]):
    """``build_torch`` module ``net`` on ``x``: (raw descriptor without offset, stage-end maps)."""
    from torch.nn import functional as F

    h, maps = F.max_pool2d(F.relu(net.stem(x)), 3, 2), []
    for i, b in enumerate(net.blocks):
        h = b(h)
        if i in ends:
            maps.append(h)
    return net.fc(h.mean(dim=(2, 3))), maps


def distill(run: str | Path, *, files: list[Path], width: float, steps: int, batch: int = 32, lr: float = 1e-4,
            relation: float = 1.0, save_every: int = 100, threads: int = 1, seed: int = 0,
            time_limit_s: float | None = None, export_now: bool = False, stream_width: float | None = None,
            refit: int = 0, hint: float = 0.0, calibrate: str = "percentile", init: str | Path | None = None,
            blocks: tuple[int, ...] | None = None, input_side: int = 150, quantize: str = "conv",
            lighting: float = 0.0, pose: float = 0.0) -> dict:
    """Train (or resume) the student of ``width`` for ``steps`` steps; export it when done
    (``export_now``: export the checkpoint as it is, however far it got). ``init``: start from the
    student weights of another run directory of the same shape (new optimiser and schedule).
    ``blocks`` / ``input_side``: see `prune_spec` (a shallower student, a smaller working size);
    ``quantize``: the int8 export, ``conv`` (QDQ convolutions) or ``weights`` (weight-only);
    ``lighting``: the probability that a training chip is relit first (`augment.relight`); ``pose``:
    that it is then warped as seen from another angle (`augment.warp_pose`)."""
    import torch

    from hybridface.faces.augment import relight, strong_augment, warp_pose
    from hybridface.models.dlib_format import read_dlib_net
    from hybridface.training.losses import hint_loss, relational_distill_loss
    from hybridface.models.resnet import build_torch, preprocess_chips, resnet_spec
    from hybridface.models.dlib_format import default_dat_path
    from hybridface.training.resnet_student import check_blocks, prune_spec, refit_conv2, stream_channels
    from torch.nn import functional as F

    run = Path(run)
    torch.set_num_threads(int(threads))
    if init is not None and not (Path(init) / "ckpt.pt").is_file():  # before any data is prepared
        raise ConfigError(f"--init {init} holds no student checkpoint (ckpt.pt); give a resnet_distill run directory")
    if hint < 0 or refit < 0 or not 0 <= lighting <= 1 or not 0 <= pose <= 1:
        raise ConfigError(f"hint and refit must be ≥ 0, lighting and pose in [0, 1], got hint={hint!r} refit={refit!r} "
                          f"lighting={lighting!r} pose={pose!r}")
    chips, teach = prepare_data(run, files, threads=threads)
    centre = torch.from_numpy(teach.mean(0))
    teacher_spec = resnet_spec(read_dlib_net(default_dat_path()))
    keep = check_blocks(teacher_spec, blocks)
    spec = prune_spec(teacher_spec, width=width, stream_width=stream_width, blocks=keep, input_side=input_side)
    shallow = keep != tuple(range(len(teacher_spec.blocks))) or input_side != teacher_spec.input_side
    ckpt = run / "ckpt.pt"
    if refit and ((stream_width if stream_width is not None else width) != 1 or shallow):
        raise ConfigError("--refit needs --stream-width 1 (a student with whole residual streams), all blocks "
                          "and the 150 px input")
    init_state = None
    if init is not None and not ckpt.is_file():
        init_state = torch.load(Path(init) / "ckpt.pt", weights_only=False)
        shape = {k: init_state.get(k, {"blocks": None, "input_side": 150}.get(k))
                 for k in ("width", "stream_width", "blocks", "input_side")}
        want = {"width": width, "stream_width": stream_width, "blocks": None if blocks is None else list(keep),
                "input_side": input_side}
        if shape != want:
            raise ConfigError(f"--init {init} is a student with {shape}, not {want}")
    if refit and not ckpt.is_file() and init_state is None:  # resumed or initialised runs load weights instead
        spec = refit_conv2(spec, teacher_spec, np.asarray(chips[np.linspace(0, len(chips) - 1, refit).astype(int)]))
    net = build_torch(spec).train()
    if init_state is not None:
        net.load_state_dict(init_state["net"])
        log.info("initialised from %s (step %d)", init, init_state["step"])
    ends, t_ends = stage_ends(spec), stage_ends(teacher_spec)
    if hint:
        tnet = build_torch(teacher_spec).eval()
        for p in tnet.parameters():
            p.requires_grad_(False)
        kept = stream_channels(teacher_spec, stream_width=stream_width if stream_width is not None else width)
        hint_channels = [torch.from_numpy(kept[i + 1]) for i in t_ends]
    setup = {"width": width, "steps": steps, "stream_width": stream_width, "refit": refit, "hint": hint,
             "init": None if init is None else str(init), "blocks": None if blocks is None else list(keep),
             "input_side": input_side, "lighting": lighting, "pose": pose}
    defaults = {"stream_width": None, "refit": 0, "hint": 0.0, "init": None, "blocks": None, "input_side": 150,
                "lighting": 0.0, "pose": 0.0}
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.02)
    step, history = 0, []
    rng = np.random.default_rng(seed)
    if ckpt.is_file():
        state = torch.load(ckpt, weights_only=False)
        old = {k: state.get(k, defaults.get(k)) for k in setup}
        if old != setup:
            raise ConfigError(f"{ckpt} is a run with {old}, not {setup}; use a new run directory")
        net.load_state_dict(state["net"])
        opt.load_state_dict(state["opt"])
        sched.load_state_dict(state["sched"])
        step, history = state["step"], state["history"]
        rng.bit_generator.state = state["rng"]
        log.info("resumed %s at step %d", run, step)
    t0 = time.monotonic()
    while step < steps and not export_now:
        idx = np.sort(rng.choice(len(chips), size=batch, replace=False))
        raw = np.asarray(chips[idx])
        raw = relight(raw, rng, p=lighting) if lighting else raw  # no draw without it: old runs resume alike
        raw = warp_pose(raw, rng, p=pose) if pose else raw
        x = torch.from_numpy(preprocess_chips(strong_augment(raw, rng, p_paper=0.2), spec.mean_rgb))
        t = torch.from_numpy(teach[idx])
        s, maps = forward_stages(net, x, ends)
        # centred: the teacher by its data mean, the student by its batch mean (a pruned student
        # starts with a different offset; the export adds the difference back)
        sc, tc = s - s.mean(0, keepdim=True), t - centre
        cos = torch.nn.functional.cosine_similarity(sc, tc, dim=1)
        loss = (1 - cos).mean() + relation * relational_distill_loss(sc, tc)
        if hint:
            with torch.no_grad():
                _, tmaps = forward_stages(tnet, x, t_ends)
                # a smaller working size: the teacher's maps averaged down to the student's
                tmaps = [t if t.shape[2:] == m.shape[2:] else F.adaptive_avg_pool2d(t, m.shape[2:])
                         for t, m in zip(tmaps, maps)]
            loss = loss + hint * hint_loss(maps, tmaps, hint_channels)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        history.append((step, float(loss.detach()), float(cos.detach().mean())))
        if step % save_every == 0 or step == steps:
            _save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                   "history": history, "rng": rng.bit_generator.state, **setup}, ckpt)
            log.info("step %d/%d loss %.4f centred cos %.4f", step, steps, *history[-1][1:])
        if time_limit_s is not None and time.monotonic() - t0 > time_limit_s and step < steps:
            _save({"net": net.state_dict(), "opt": opt.state_dict(), "sched": sched.state_dict(), "step": step,
                   "history": history, "rng": rng.bit_generator.state, **setup}, ckpt)
            log.info("time limit: stopped at step %d (resumable)", step)
            return {"step": step, "done": False}
    with torch.no_grad():  # the offset that puts the student's mean where the teacher's is
        sample = np.linspace(0, len(chips) - 1, min(512, len(chips))).astype(int)
        mu = np.concatenate([net.eval()(torch.from_numpy(preprocess_chips(np.asarray(chips[sample[i:i + 64]]),
                                                                           spec.mean_rgb))).numpy()
                             for i in range(0, len(sample), 64)]).mean(0)
    return export(run, net, spec, width=width, history=history, offset=teach.mean(0) - mu, recipe=setup,
                  calibrate=calibrate, quantize_ops=quantize)


def export(run: Path, net, like, *, width: float, history: list, offset: np.ndarray | None = None,
           recipe: dict | None = None, calibrate: str = "percentile", quantize_ops: str = "conv") -> dict:
    """Write ``student.onnx``, ``student.int8.onnx`` and ``card.json``. ``quantize_ops``: a
    `resnet_int8.QUANTIZE_OPS` key (QDQ, calibrated on the run's chips) or ``weights``
    (`resnet_int8.quantize_weights`: int8 weights, float arithmetic, no calibration)."""
    from hybridface.hashing import file_sha256
    from hybridface.models.card import library_versions
    from hybridface.models.resnet import build_onnx
    from hybridface.models.resnet_int8 import quantize_onnx, quantize_weights
    from hybridface.training.resnet_student import count_parameters, spec_from_torch

    from dataclasses import replace

    spec = replace(spec_from_torch(net, like), offset=None if offset is None else offset.astype(np.float32))
    fp32 = run / "student.onnx"
    fp32.write_bytes(build_onnx(spec).SerializeToString())
    fused = run / "fused.tmp.onnx"
    fused.write_bytes(build_onnx(spec, fold_affine=True).SerializeToString())
    chips = np.load(run / "data" / "chips.npy", mmap_mode="r")
    calib = np.asarray(chips[np.linspace(0, len(chips) - 1, min(256, len(chips))).astype(int)])
    int8 = run / "student.int8.onnx"
    if quantize_ops == "weights":
        quantize_weights(fused, int8)
    else:
        quantize_onnx(fused, int8, calib, per_channel=True, calibrate=calibrate, ops=quantize_ops)
    fused.unlink()
    card = {"model": f"resnet student, width {width}", "teacher": "dlib_face_recognition_resnet_model_v1",
            "parameters": count_parameters(spec), "input": "uint8 (n, 150, 150, 3) RGB aligned chip",
            "working_side": spec.input_side, "blocks": len(spec.blocks),
            "output": "float32 (n, 128) descriptor", "fp32": {"file": fp32.name, "bytes": fp32.stat().st_size,
                                                             "sha256": file_sha256(fp32)},
            "int8": {"file": int8.name, "bytes": int8.stat().st_size, "sha256": file_sha256(int8),
                     "calibration": ("none (weight-only, symmetric per-channel)" if quantize_ops == "weights"
                                     else f"{calibrate}, per-channel weights, {len(calib)} chips"),
                     "quantized_ops": quantize_ops},
            "recipe": recipe or {},
            "training": {"steps": len(history), "final_loss": history[-1][1] if history else None,
                         "final_centred_cos": history[-1][2] if history else None,
                         "faces": int(len(chips))},
            "versions": library_versions()}
    (run / "card.json").write_text(json.dumps(card, indent=2) + "\n")
    return {"step": len(history), "done": True, **card}


def ship(run: str | Path, *, name: str, weights_dir: str | Path) -> Path:
    """Copy an exported run's ``student.int8.onnx`` to ``weights_dir/<name>.int8.onnx`` and its card,
    named and pointing at that file, to ``weights_dir/<name>.json`` (what `zoo.load_encoder(name)`
    loads and checks). Returns the ONNX path."""
    import shutil

    from hybridface.hashing import file_sha256

    run, out = Path(run), Path(weights_dir)
    src, card_path = run / "student.int8.onnx", run / "card.json"
    if not src.is_file() or not card_path.is_file():
        raise ConfigError(f"{run} has no exported student (student.int8.onnx + card.json); run it to the end "
                          f"or with --export-now first")
    card = json.loads(card_path.read_text())
    if card["int8"]["sha256"] != file_sha256(src):
        raise ConfigError(f"{src} does not match {card_path}; export the run again")
    dst = out / f"{name}.int8.onnx"
    shutil.copyfile(src, dst)
    # model_id: what `ResNetEncoder` calls this file, so a gallery enrolled with it reopens with it
    card = {"name": name, "model_id": f"resnet-{card['int8']['sha256'][:16]}", **card,
            "int8": {**card["int8"], "file": dst.name}, "run": str(run)}
    card["fp32"] = {**card["fp32"], "shipped": False}
    (out / f"{name}.json").write_text(json.dumps(card, indent=2) + "\n")
    return dst


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="distil a pruned student of the dlib ResNet port (resumable)")
    ap.add_argument("run", type=Path)
    ap.add_argument("--data", required=True, type=Path, help="folder of face crops (never an unseen hold-out)")
    ap.add_argument("--faces", type=int, default=4000)
    ap.add_argument("--width", type=float, default=0.5)
    ap.add_argument("--stream-width", type=float, default=None, help="residual-stream fraction (default: --width)")
    ap.add_argument("--refit", type=int, default=0, help="chips for the least-squares conv2 refit at init (0: off)")
    ap.add_argument("--hint", type=float, default=0.0, help="weight of the per-stage hint loss (0: off)")
    ap.add_argument("--init", type=Path, default=None, help="run directory whose student weights to start from")
    ap.add_argument("--calibrate", choices=("minmax", "percentile", "entropy"), default="percentile",
                    help="int8 activation calibration of the export")
    ap.add_argument("--blocks", default=None, help="teacher blocks to keep, e.g. 0,3,7,10,13 (default: all)")
    ap.add_argument("--input-side", type=int, default=150, help="resize the 150x150 chip to this side first")
    ap.add_argument("--quantize", choices=("conv", "weights"), default="conv",
                    help="int8 export: QDQ convolutions, or weight-only (float arithmetic)")
    ap.add_argument("--lighting", type=float, default=0.0,
                    help="probability that a training chip is relit (directional light, shadow, gamma)")
    ap.add_argument("--pose", type=float, default=0.0,
                    help="probability that a training chip is warped as a turned or tilted head")
    ap.add_argument("--steps", type=int, default=3000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-4)
    ap.add_argument("--relation", type=float, default=1.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--time-limit", type=float, default=None, help="seconds; stop (resumable) after this")
    ap.add_argument("--export-now", action="store_true", help="export the checkpoint as it is (no training)")
    ap.add_argument("--ship", metavar="NAME", default=None,
                    help="only copy the run's exported int8 student + card to --ship-dir as NAME (e.g. resnet-tiny)")
    ap.add_argument("--ship-dir", type=Path, default=None, help="e.g. src/hybridface/models/weights")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    try:
        return _run(ap, args)
    except HybridFaceError as exc:  # one actionable line, no traceback
        ap.exit(2, f"error: {exc}\n")


def _run(ap: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    if args.ship:
        if args.ship_dir is None:
            ap.error("--ship needs --ship-dir")
        log.info("wrote %s", ship(args.run, name=args.ship, weights_dir=args.ship_dir))
        return 0
    from hybridface.models.resnet_int8 import calibration_files

    try:
        blocks = None if args.blocks is None else tuple(int(b) for b in args.blocks.split(","))
    except ValueError:
        ap.error(f"--blocks takes comma-separated block indices, e.g. 0,1,3,4,7,10,13; got {args.blocks!r}")
    files = calibration_files(args.data, n=args.faces)
    out = distill(args.run, files=files, width=args.width, steps=args.steps, batch=args.batch, lr=args.lr,
                  relation=args.relation, threads=args.threads, time_limit_s=args.time_limit,
                  export_now=args.export_now, stream_width=args.stream_width, refit=args.refit, hint=args.hint,
                  calibrate=args.calibrate, init=args.init, input_side=args.input_side, quantize=args.quantize,
                  blocks=blocks, lighting=args.lighting, pose=args.pose)
    log.info("%s", {k: v for k, v in out.items() if k != "versions"})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
