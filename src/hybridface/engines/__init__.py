"""Search engines: one gallery split by identity into shards, each searched by the ordinary local
searcher, in-process (`engines.local`, threads) or on Ray actors (`engines.ray`).

Use `hybridface.engines.local.make_engine("local" | "ray", matrix, ...)`; nothing heavy is
imported until then.
"""
