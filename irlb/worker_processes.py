"""The worker processes of the side-by-side benchmarks (``benchmarks/``): each cell of a comparison runs in a fresh
Python process with one BLAS/OpenMP thread, started by the driver as ``python <script> --worker ROLE --OPTION VALUE``.

A benchmark script calls :func:`worker_or_driver` from its ``main`` (the worker options stay out of ``--help``), and
:func:`run_worker_process` from the driver to run one cell."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import IO, Any

ROOT = Path(__file__).resolve().parent.parent  # the repository (the workers import its packages from there)


def add_scale_flags(parser: argparse.ArgumentParser, helps: Mapping[str, str], default: str = "quick") -> None:
    """Mutually exclusive flags ``--NAME`` (one per key of ``helps``, in its order, with its help text) that set
    ``args.scale`` to ``NAME``; ``default`` when none is given."""
    scale = parser.add_mutually_exclusive_group()
    for name, text in helps.items():
        scale.add_argument(f"--{name}", dest="scale", action="store_const", const=name, help=text)
    parser.set_defaults(scale=default)


def worker_or_driver(parser: argparse.ArgumentParser, argv: list[str] | None, roles: tuple[str, ...],
                     worker_options: tuple[str, ...], run_worker: Callable[[argparse.Namespace], None],
                     run_driver: Callable[[argparse.Namespace], None]) -> None:
    """Add the hidden ``--worker ROLE`` (one of ``roles``) and ``--OPTION`` (each of ``worker_options``, a string)
    to ``parser``, parse ``argv`` and run ``run_worker`` when ``--worker`` is given, else ``run_driver``."""
    parser.add_argument("--worker", choices=roles, help=argparse.SUPPRESS)
    for option in worker_options:
        parser.add_argument(f"--{option}", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        run_worker(args)
    else:
        run_driver(args)


def run_worker_process(script: str, role: str, options: Mapping[str, str], *,
                       environment: Mapping[str, str] | None = None, stdout: IO[Any] | None = None) -> int:
    """Run ``python script --worker role --KEY VALUE …`` (``options``) from the repository root, with one OpenMP,
    MKL and OpenBLAS thread, the repository on ``PYTHONPATH`` and the extra ``environment`` variables; its stdout
    and stderr go to ``stdout`` when given. Returns the exit code."""
    command = [sys.executable, str(Path(script).resolve()), "--worker", role]
    for key, value in options.items():
        command += [f"--{key}", value]
    variables = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
                 **(environment or {}),
                 "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    redirect: dict[str, Any] = {"stdout": stdout, "stderr": subprocess.STDOUT} if stdout is not None else {}
    return subprocess.run(command, env=variables, cwd=ROOT, **redirect).returncode
