"""Experiments that use the core alone or span several sides (classic RL, LLM) of the project.

Each module exposes ``SCALES`` (``tiny``: seconds, for tests; ``quick``: a laptop; ``full``: the paper's
scale), ``CONFIG`` (the typed, frozen settings dataclass each ``SCALES`` entry validates into; see
``irl_bilevel.config``) and ``run(scale, results_dir, seed=0, progress=True, config=None) -> Path`` (``config``,
if given, replaces the scale's settings), which writes ``results_dir/<name>.json`` with the configuration,
provenance and every number the matching ``figures/<name>.py`` draws.
"""
