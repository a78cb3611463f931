"""Keep a live sharded engine in step with a changed gallery matrix (no full rebuild).

The gallery's searcher cache (`hybridface.engines.cache.SearcherCache`, behind `hybridface.api.Gallery`)
reloads its `TemplateMatrix` whenever the store's revision moves. Local searchers are cheap to rebuild; a Ray engine is not (every shard is shipped
to the cluster again and every actor restarted). `sync_engine` instead diffs the two matrices by
identity and routes only the changes to the owning shards with `ShardedEngine.add` / `remove`:

* identity gone (removed or renamed away) -> ``remove``;
* new identity (enrolled or renamed to)   -> ``add`` with its templates and codewords;
* templates appended to an identity       -> ``add`` of the new templates (+ its new codewords);
* any other change of an identity (a template removed, vectors or codewords changed)
  -> ``remove`` then ``add`` of the whole identity.

Results then index into ``engine.names`` (the order of routed updates), not the new matrix's
order; callers map identities through ``engine.names``.
"""

from __future__ import annotations

import contextlib
import logging

import numpy as np

from hybridface.gallery.matrix import TemplateMatrix

log = logging.getLogger(__name__)

#: Above this share of changed identities a rebuild is cheaper than routed updates.
MAX_CHANGED_SHARE = 0.5


def _codewords(matrix: TemplateMatrix, ident: int) -> np.ndarray | None:
    if matrix.codewords is None or matrix.codeword_labels is None:
        return None
    return matrix.codewords[matrix.codeword_labels == ident]


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b))


def plan_updates(old: TemplateMatrix, new: TemplateMatrix) -> list[tuple[str, str, dict]] | None:
    """The routed updates that turn ``old`` into ``new``: ``(op, name, args)``; ``None`` = rebuild."""
    if old.dim != new.dim or old.model_id != new.model_id:
        return None
    if (old.codewords is None) != (new.codewords is None):
        return None
    new_names = set(new.names)
    ops: list[tuple[str, str, dict]] = []
    for name in old.names:
        if name not in new_names:
            ops.append(("remove", name, {}))
    old_index = {n: i for i, n in enumerate(old.names)}
    for j, name in enumerate(new.names):
        rows_new = new.rows(j)
        ids_new = new.template_ids[rows_new]
        cw_new = _codewords(new, j)
        full = {"vectors": new.vectors[rows_new], "template_ids": ids_new, "codewords": cw_new}
        i = old_index.get(name)
        if i is None:
            ops.append(("add", name, full))
            continue
        rows_old = old.rows(i)
        ids_old = old.template_ids[rows_old]
        n_old = len(ids_old)
        unchanged_prefix = (
            len(ids_new) >= n_old
            and np.array_equal(ids_new[:n_old], ids_old)
            and np.array_equal(new.vectors[rows_new][:n_old], old.vectors[rows_old])
        )
        if unchanged_prefix and len(ids_new) == n_old:
            if not _same(cw_new, _codewords(old, i)):
                ops += [("remove", name, {}), ("add", name, full)]
            continue
        if unchanged_prefix:
            ops.append(("add", name, {"vectors": new.vectors[rows_new][n_old:],
                                      "template_ids": ids_new[n_old:], "codewords": cw_new}))
        else:
            ops += [("remove", name, {}), ("add", name, full)]
    changed = len({name for _, name, _ in ops})
    if changed > MAX_CHANGED_SHARE * max(new.num_identities, old.num_identities, 1):
        return None
    return ops


def sync_engine(engine, old: TemplateMatrix, new: TemplateMatrix) -> bool:
    """Route the changes from ``old`` to ``new`` into ``engine``; ``False`` = rebuild it instead.

    ``engine`` must have been built over ``old`` (or kept in step with it by earlier calls) and
    offer ``add(name, vectors, *, template_ids, codewords, normalized)`` and ``remove(name)``.
    """
    if not (hasattr(engine, "add") and hasattr(engine, "remove")):
        return False
    ops = plan_updates(old, new)
    if ops is None:
        return False
    if new.num_identities == 0:
        return False
    with getattr(engine, "lock", None) or contextlib.nullcontext():  # queries see old or new, not a mix
        for op, name, args in ops:
            if op == "remove":
                engine.remove(name)
            else:
                engine.add(name, args["vectors"], template_ids=args["template_ids"], codewords=args["codewords"],
                           normalized=True)
    if ops:
        log.info("engine kept in step with the gallery: %d routed update(s)", len(ops))
    return True
