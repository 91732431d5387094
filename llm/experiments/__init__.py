"""Experiments of the language-model side, with the conventions of ``classic_rl.experiments``.

Each module exposes ``SCALES`` (``tiny``: seconds, for tests; ``quick``: minutes on one CPU core; ``full``: the
paper's scale), ``CONFIG`` (the typed, frozen settings dataclass each ``SCALES`` entry validates into; see
``irl_bilevel.config``) and ``run(scale, results_dir, seed=0, progress=True, config=None) -> Path``, which writes
``results_dir/<name>.json`` with the configuration, provenance and every number ``figures/<name>.py`` draws.
"""
