"""Experiments that use the core alone or span several sides (classic RL, LLM) of the project.

Each module exposes ``SCALES`` (``tiny``: seconds, for tests; ``quick``: a laptop; ``full``: the paper's
scale) and ``run(scale, results_dir, seed=0, progress=True) -> Path``, which writes ``results_dir/<name>.json``
with the configuration, provenance and every number the matching ``figures/<name>.py`` draws.
"""
