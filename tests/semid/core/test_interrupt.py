"""semid.core.interrupt.deferred: a signal that arrives inside the block is acted on when the block ends."""
from __future__ import annotations

import os
import signal

import pytest

from semid.core import interrupt


@pytest.fixture
def installed():  # noqa: ANN201
    before = {s: signal.getsignal(s) for s in interrupt.EXIT_CODES}
    interrupt.install()
    yield
    for s, h in before.items():
        signal.signal(s, h)
    interrupt._state["signal"] = None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_inside_deferred_is_raised_after_the_block(installed, sig) -> None:  # noqa: ANN001
    finished = False
    with pytest.raises(KeyboardInterrupt):
        with interrupt.deferred():
            os.kill(os.getpid(), sig)
            for _ in range(1000):  # bytecodes on which Python runs a pending handler
                pass
            finished = True
    assert finished and interrupt.interrupted() == sig
    assert interrupt.message()[1] == interrupt.EXIT_CODES[sig]
    assert signal.getsignal(sig) is interrupt._raise  # the handler is back


def test_deferred_without_a_signal_changes_nothing(installed) -> None:  # noqa: ANN001
    with interrupt.deferred():
        pass
    assert interrupt.interrupted() is None and signal.getsignal(signal.SIGTERM) is interrupt._raise
