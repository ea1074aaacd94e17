"""Whether this process was forked from the warm process (``core.jobs.zygote``), and how a fork shows itself.

Why its own module: the warm process runs as ``python -m lora_factory.core.jobs.zygote``, i.e. as
``__main__``, so a flag kept there would not be the one ``import lora_factory.core.jobs.zygote`` sees.
A worker forked warm has the modality's libraries imported and has been checked safe to fork
(``zygote.probe_fork``); it may fork its own children the same way (a job's ranks, ``core.jobs.ranks``)
instead of spawning interpreters that import everything again.
"""

from __future__ import annotations

import sys

_forked_warm = False


def mark_forked_warm() -> None:
    """Called once in a worker the warm process has just forked."""
    global _forked_warm
    _forked_warm = True


def forked_warm() -> bool:
    """True in a worker forked from the warm process (and in the processes it forks in turn)."""
    return _forked_warm


def show_as(module: str, args: list[str]) -> None:
    """``sys.argv`` and the title ps / top show: the command line a spawned process would have."""
    sys.argv = [module, *args]
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(" ".join([sys.executable, "-m", module, *args]))
