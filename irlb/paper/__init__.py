"""`irlb paper`: the paper's numbers and tables as LaTeX, from the result files.

:mod:`irlb.paper.macros` (names, formatting, containers), :mod:`irlb.paper.experiment_tables` and
:mod:`irlb.paper.benchmark_tables` (one handler per result file), :mod:`irlb.paper.build` (reads the files and
writes ``numbers.tex`` and the tables).
"""
