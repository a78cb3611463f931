"""Helpers for the service tests: start/stop a real uvicorn server process on 127.0.0.1."""

from __future__ import annotations

import io
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

HOST = "127.0.0.1"  # never any other address


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class Server:
    """``hybridface serve`` in a subprocess; ``url`` is its base address."""

    def __init__(self, db: Path, *extra: str, log: Path | None = None, wait: bool = True) -> None:
        self.db = Path(db)
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.log_path = log or self.db.with_suffix(f".{self.port}.log")
        self._log = open(self.log_path, "wb")
        env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "hybridface", "serve", "--db", str(self.db), "--host", HOST,
             "--port", str(self.port), *extra],
            stdout=self._log, stderr=subprocess.STDOUT, env=env,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"server did not start in {timeout} s:\n{self.log()}")

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def png_bytes(seed: int, size: int = 64) -> bytes:
    """A distinct small RGB PNG (smooth random blobs) for enrol/identify with ``detect=never``."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (6, 6, 3), dtype=np.uint8)
    img = Image.fromarray(small).resize((size, size), Image.BILINEAR)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


_MODEL_DIR: list[str] = []


def model_args() -> list[str]:
    """``["--model", "general"]`` when the shipped compressed model exists (pinned: the default is
    dlib when installed, ~85 ms per face), else ``["--model", DIR]`` of a real CompressedVGGFace
    with seeded random weights exported once per test process."""
    from hybridface.models.encoders import shipped_model_path

    if shipped_model_path("general").is_file():
        return ["--model", "general"]
    if not _MODEL_DIR:
        import atexit
        import shutil
        import tempfile

        import torch

        from hybridface.models.compressed import CompressedVGGFace
        from hybridface.models.preprocess import PreprocessSpec
        from hybridface.training.train import write_model_dir

        torch.manual_seed(0)
        tmp = tempfile.mkdtemp(prefix="hf-service-model-")
        atexit.register(shutil.rmtree, tmp, True)
        out = Path(tmp) / "model"
        write_model_dir(CompressedVGGFace(5).eval(), out, PreprocessSpec(), {"data": "random init (service tests)"})
        _MODEL_DIR.append(str(out))
    return ["--model", _MODEL_DIR[0]]


def model_path() -> str:
    return model_args()[1]
