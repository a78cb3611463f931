"""The authors' published compressed-VGGFace weights as an `Encoder` (the ``paper`` model).

Input as the reference README prescribes: 60x60, grey as three equal channels, pixels scaled to
[0, 1]; the template is the 60-D FC-60 output, L2-normalised.
"""

from __future__ import annotations

import logging
import os
from os import PathLike
from pathlib import Path

from hybridface.hashing import file_sha256
from hybridface.config import SHARED_DIR
from hybridface.models.baselines._backbone import seeded_init
from hybridface.models.encoders import TorchEncoder
from hybridface.models.preprocess import PreprocessSpec

log = logging.getLogger(__name__)


def default_paper_npz() -> Path | None:
    """``$HYBRIDFACE_PAPER_WEIGHTS`` or ``../shared/reference/paper_compressed_vggface.npz`` if present."""
    env = os.environ.get("HYBRIDFACE_PAPER_WEIGHTS")
    candidates = [Path(env)] if env else []
    candidates.append(SHARED_DIR / "reference" / "paper_compressed_vggface.npz")
    return next((c for c in candidates if c.is_file()), None)


class PaperEncoder(TorchEncoder):
    """`Encoder` over the paper's 25,713-parameter network (random init when no file is found)."""

    def __init__(self, weights: str | PathLike | None = None, *, seed: int = 0, batch_size: int = 256) -> None:
        from hybridface.models.compressed import CompressedVGGFace
        from hybridface.models.baselines.paper_weights import load_paper_weights

        path = Path(weights) if weights is not None else default_paper_npz()
        if path is not None:
            net = load_paper_weights(path)
            model_id = f"paper-{file_sha256(path)[:16]}"
        else:
            log.warning("paper weights not found: running the paper network on random weights")
            net = seeded_init(lambda: CompressedVGGFace(15), seed).eval()
            model_id = f"paper-random-seed{seed}"
        self.has_weights = path is not None
        self.net = net
        spec = PreprocessSpec(input_size=60, channels="grey3", illumination="none", scale=1.0 / 255.0)
        super().__init__(net, spec, model_id=model_id, batch_size=batch_size)
