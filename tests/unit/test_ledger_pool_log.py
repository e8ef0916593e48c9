"""Ctrl-C while SQLAlchemy's pool resets a returned connection: the pool logs the KeyboardInterrupt with a
traceback before re-raising it. While a command line's ledger listens, that record is dropped, and no other."""

from __future__ import annotations

import logging
import sys

import pytest

from db.cli.ledger import Ledger, _pool_loggers


def _record(error: BaseException) -> logging.LogRecord:
    try:
        raise error
    except BaseException:
        exc_info = sys.exc_info()
    logger = logging.getLogger("sqlalchemy.pool.impl.QueuePool")
    return logger.makeRecord(logger.name, logging.ERROR, __file__, 1, "Exception during reset or similar", (),
                             exc_info)


def _passes(record: logging.LogRecord) -> bool:
    return all(logger.filter(record) for logger in _pool_loggers() if logger.name == record.name)


@pytest.mark.parametrize(("error", "shown"), [(KeyboardInterrupt(), False), (RuntimeError("reset failed"), True)])
def test_only_the_interrupts_own_reset_report_is_dropped_while_a_ledger_listens(
    error: BaseException, shown: bool
) -> None:
    ledger = Ledger()
    with ledger.watching():
        ledger.listen()
        assert _passes(_record(error)) is shown
    assert _passes(_record(error)) is True
