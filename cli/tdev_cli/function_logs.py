"""Where the functions' own output goes while a command runs: a log file, not the terminal.

Every command that runs the local runtime uses this (run, serve, chaos, session, the benchmarks); it lives
apart from `tdev_cli.main` so the commands do not import the entry point that imports them.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def functions_output(log_dir: str, name: str) -> Iterator[Path]:
    """Send what the functions print (Powertools JSON logs, EMF metrics) to a file, not the terminal."""
    directory = Path(log_dir)
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.jsonl"
    from tdev.observability import logger as functions_logger

    saved, saved_handlers = sys.stdout, logging.root.handlers[:]
    with path.open("w") as sink:
        sys.stdout = sink  # EMF metrics are printed
        # Libraries that log through the root logger (botocore, agno) write there too, and so does the
        # functions' Powertools logger, whichever stream it was created with.
        logging.root.handlers = [logging.StreamHandler(sink)]
        handlers = [h for h in functions_logger.handlers if isinstance(h, logging.StreamHandler)]
        previous = [h.setStream(sink) for h in handlers]
        # Agno's loggers do not propagate and print through their own rich handlers (e.g. a throttled
        # model's error before the fallback answers): to the file too.
        names = [name for name in list(logging.root.manager.loggerDict) if name.startswith("agno")]
        agno_loggers = [logging.getLogger(name) for name in names]
        agno_handlers = [(lg, lg.handlers[:]) for lg in agno_loggers]
        for lg in agno_loggers:
            lg.handlers = [logging.StreamHandler(sink)]
        try:
            yield path
        finally:
            for lg, saved_agno in agno_handlers:
                lg.handlers = saved_agno
            sys.stdout = saved
            logging.root.handlers = saved_handlers
            for handler, stream in zip(handlers, previous, strict=True):
                if stream is not None:
                    handler.setStream(stream)
