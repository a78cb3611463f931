"""`TemplateMatrix`: the contiguous, normalised, in-memory view of a gallery that searchers read."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from hybridface.errors import ConfigError, ModelMismatchError
from hybridface.vectors import l2_normalize


@dataclass(frozen=True)
class TemplateMatrix:
    """Templates grouped by identity.

    Attributes:
        vectors: ``(N, d)`` float32, C-contiguous, unit rows, sorted so each identity's rows are
            contiguous (identity ``i`` owns rows ``offsets[i]:offsets[i + 1]``).
        labels: ``(N,)`` int64 identity index of each row.
        template_ids: ``(N,)`` int64 store id of each row (row number when not from a store).
        names: identity names; ``names[i]`` is identity ``i``.
        offsets: ``(M + 1,)`` int64 row boundaries per identity.
        codewords: ``(C, d)`` float32 unit LBG codewords, or ``None`` when not indexed.
        codeword_labels: ``(C,)`` int64 identity index of each codeword, or ``None``.
        model_id: id of the encoder that made the templates ("" when unknown).
    """

    vectors: np.ndarray
    labels: np.ndarray
    template_ids: np.ndarray
    names: tuple[str, ...]
    offsets: np.ndarray
    codewords: np.ndarray | None = None
    codeword_labels: np.ndarray | None = None
    model_id: str = ""
    _name_index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_arrays(
        cls,
        vectors: np.ndarray,
        identities: Sequence[str] | np.ndarray,
        *,
        template_ids: np.ndarray | None = None,
        model_id: str = "",
    ) -> TemplateMatrix:
        """Build from unsorted rows; ``identities[j]`` is the name (str) of row ``j``.

        Rows are L2-normalised and stably grouped by identity in order of first appearance.
        """
        vectors = np.asarray(vectors)
        if vectors.ndim != 2:
            raise ConfigError(f"templates must be a 2-D (n, d) array, got shape {vectors.shape}")
        if len(identities) != vectors.shape[0]:
            raise ConfigError(
                f"{vectors.shape[0]} templates but {len(identities)} identity labels"
            )
        if not np.isfinite(vectors).all():
            raise ConfigError("templates contain NaN or infinite values")
        names: list[str] = []
        index: dict[str, int] = {}
        row_labels = np.empty(len(identities), dtype=np.int64)
        for j, name in enumerate(identities):
            name = str(name)
            if name not in index:
                index[name] = len(names)
                names.append(name)
            row_labels[j] = index[name]
        order = np.argsort(row_labels, kind="stable")
        ids = (
            np.arange(vectors.shape[0], dtype=np.int64)
            if template_ids is None
            else np.asarray(template_ids, dtype=np.int64)
        )
        if ids.shape != (vectors.shape[0],):
            raise ConfigError("template_ids must have one id per template")
        labels = row_labels[order]
        counts = np.bincount(labels, minlength=len(names))
        offsets = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(
            vectors=l2_normalize(vectors[order]) if len(order) else np.zeros((0, vectors.shape[1]), np.float32),
            labels=labels,
            template_ids=ids[order],
            names=tuple(names),
            offsets=offsets,
            model_id=model_id,
        )

    def with_codebooks(self, codewords: np.ndarray, codeword_labels: np.ndarray) -> TemplateMatrix:
        """Return a copy carrying LBG codewords (``codeword_labels`` index into ``names``)."""
        codewords = np.asarray(codewords, dtype=np.float32)
        codeword_labels = np.asarray(codeword_labels, dtype=np.int64)
        if codewords.ndim != 2 or codewords.shape[1] != self.dim:
            raise ModelMismatchError(
                f"codewords have shape {codewords.shape}, expected (C, {self.dim})"
            )
        if codeword_labels.shape != (codewords.shape[0],):
            raise ConfigError("codeword_labels must have one identity index per codeword")
        if len(codeword_labels) and (codeword_labels.min() < 0 or codeword_labels.max() >= self.num_identities):
            raise ConfigError("codeword_labels refer to identities outside the matrix")
        return TemplateMatrix(
            vectors=self.vectors,
            labels=self.labels,
            template_ids=self.template_ids,
            names=self.names,
            offsets=self.offsets,
            codewords=l2_normalize(codewords),
            codeword_labels=codeword_labels,
            model_id=self.model_id,
        )

    # ------------------------------------------------------------------ views
    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    @property
    def num_templates(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def num_identities(self) -> int:
        return len(self.names)

    def rows(self, identity: int) -> slice:
        """Row slice of identity index ``identity``."""
        return slice(int(self.offsets[identity]), int(self.offsets[identity + 1]))

    def index_of(self, name: str) -> int:
        """Identity index of ``name`` (``KeyError`` if absent)."""
        if not self._name_index:
            self._name_index.update({n: i for i, n in enumerate(self.names)})
        return self._name_index[name]

    def check_probes(self, probes: np.ndarray) -> np.ndarray:
        """Validate and L2-normalise a probe batch against this matrix's dimension."""
        probes = np.asarray(probes)
        if probes.ndim == 1:
            probes = probes[None, :]
        if probes.ndim != 2 or probes.shape[1] != self.dim:
            raise ModelMismatchError(
                f"probes have shape {probes.shape}, but the gallery holds {self.dim}-D templates"
            )
        try:
            return l2_normalize(probes, check_finite=True)
        except ValueError:
            raise ConfigError("probe vectors contain NaN or infinite values") from None
