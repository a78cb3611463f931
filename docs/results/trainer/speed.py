"""Best-of-3 wall time of a 5-epoch paper run and a 5-epoch general run (400 images, 20 identities, threads=1): `old` loops or `new` trainer."""
import sys, time
import numpy as np
rng = np.random.default_rng(0)
K, per = 20, 20
imgs = rng.integers(0, 255, (K * per, 60, 60, 3), dtype=np.uint8)
ids = [f"id{i // per}" for i in range(K * per)]
teacher = rng.normal(size=(K * per, 128)).astype(np.float32)
out = []
for rep in range(3):
    if sys.argv[1] == "old":
        from hybridface.training.train import fit_arrays
        from hybridface.training.distill import fit_general
        t = time.perf_counter(); fit_arrays(imgs, ids, epochs=5, lr=1e-3, progress=False, threads=1); a = time.perf_counter() - t
        t = time.perf_counter(); fit_general(imgs, teacher=teacher, labels=ids, loss="softmax", epochs=5, progress=False, threads=1); b = time.perf_counter() - t
    else:
        from hybridface.training.trainer import TrainConfig, train
        t = time.perf_counter(); train(TrainConfig.paper(epochs=5, lr=1e-3, progress=False, threads=1), imgs, labels=ids); a = time.perf_counter() - t
        t = time.perf_counter(); train(TrainConfig.general(loss="softmax", epochs=5, progress=False, threads=1), imgs, teacher=teacher, labels=ids); b = time.perf_counter() - t
    out.append((a, b))
print(sys.argv[1], "paper 5 ep: best %.2f s, general 5 ep: best %.2f s" % (min(x[0] for x in out), min(x[1] for x in out)))
