"""Is the suite installed, or only the library? (``pip install lstm-suite`` vs ``'lstm-suite[suite]'``)

The distribution's base dependencies are the library's (``lstm_core``: TensorFlow, Keras, NumPy,
LiteRT); the tasks need the ``suite`` extra (docs/packaging.md). In a library-only install the
``lstm-suite`` console script still exists, so :func:`missing_suite_distributions` lets it say in one
line what to install instead of failing with a traceback halfway through a run. It reads installed
metadata only (no imports of the dependencies), so ``--help`` stays instant.
"""

from __future__ import annotations

import functools
import re
from importlib import metadata

DISTRIBUTION = "lstm-suite"
SUITE_EXTRA = "suite"
INSTALL_HINT = "pip install 'lstm-suite[suite]'"

_NAME = re.compile(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def extra_requirements(extra: str, requires: list[str], *, project: str = DISTRIBUTION) -> list[str]:
    """Distribution names that ``project[extra]`` adds, following extras of ``project`` itself.

    Args:
        extra: the extra's name (``"suite"``).
        requires: the project's ``Requires-Dist`` lines (``importlib.metadata.requires``).
        project: the project's own name, whose self-references (``lstm-suite[tflm]``) are followed.

    Returns:
        Normalised distribution names, in the order the metadata lists them.
    """
    names, pending, seen = [], [extra], set()
    while pending:
        current = pending.pop()
        seen.add(current)
        for line in requires:
            requirement, _, marker = line.partition(";")
            if current not in _EXTRA.findall(marker):
                continue
            name, extras = _NAME.match(requirement).groups()
            if _normalise(name) == _normalise(project):
                pending.extend(e.strip() for e in (extras or "").split(",") if e.strip() and e.strip() not in seen)
            elif _normalise(name) not in names:
                names.append(_normalise(name))
    return names


@functools.lru_cache(maxsize=None)
def missing_suite_distributions() -> tuple[str, ...]:
    """The ``suite`` extra's distributions that are not installed (empty: the suite can run).

    A source tree run without any install of ``lstm-suite`` has no metadata to compare with: empty.
    """
    try:
        requires = metadata.requires(DISTRIBUTION) or []
    except metadata.PackageNotFoundError:
        return ()
    missing = []
    for name in extra_requirements(SUITE_EXTRA, requires):
        try:
            metadata.distribution(name)
        except metadata.PackageNotFoundError:
            missing.append(name)
    return tuple(missing)


def suite_missing_message() -> str | None:
    """One line saying what to install when only the library is installed, else None."""
    missing = missing_suite_distributions()
    if not missing:
        return None
    shown = ", ".join(missing[:4]) + (f" and {len(missing) - 4} more" if len(missing) > 4 else "")
    return (f"the lstm-suite tasks need the suite's dependencies, and this install has only the library "
            f"(lstm_core; missing {shown}): {INSTALL_HINT}")
