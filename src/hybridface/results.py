"""The frozen result records the facade returns: enrolment reports, identifications, verifications."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class EnrollReport:
    """What one `Gallery.enroll` did: templates added, duplicates ignored, files skipped (with why)."""

    identity: str
    template_ids: tuple[int, ...] = ()
    duplicates: int = 0
    skipped: tuple[tuple[str, str], ...] = ()

    @property
    def added(self) -> int:
        return len(self.template_ids)


@dataclass(frozen=True)
class Identification:
    """The answer for one probe. ``identity`` is ``None`` when unknown (over the threshold) or on error."""

    probe: str
    identity: str | None
    distance: float | None
    candidates: tuple[tuple[str, float], ...] = ()
    status: str = "ok"  # ok | no_face | error
    error: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The JSON shape of the CLI and the service."""
        return {
            "probe": self.probe,
            "identity": self.identity,
            "distance": self.distance,
            "candidates": [[n, d] for n, d in self.candidates],
            "status": self.status,
            "error": self.error,
        }


@dataclass(frozen=True)
class Verification:
    """1:1 answer: cosine distance between two faces and the same/different decision."""

    a: str
    b: str
    distance: float
    threshold: float
    same: bool
