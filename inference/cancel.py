"""Cooperative cancel: SIGINT/SIGTERM or a `<shot>/cancel.request` file (docs/contract.md).

The step callback polls it and stops between steps, so finished windows stay intact
(the pattern Dream Textures uses: a flag checked by the step callback, never a kill).
"""

import signal
from pathlib import Path

REQUEST_FILE = "cancel.request"


class Cancelled(Exception):
    pass


class CancelFlag:
    def __init__(self, shot_dir: Path):
        self._request = Path(shot_dir) / REQUEST_FILE
        self._signalled = False
        # A request left by an earlier run was answered by that run; this is a new one.
        self._request.unlink(missing_ok=True)
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, self._on_signal)

    def _on_signal(self, signum, frame) -> None:
        self._signalled = True

    def requested(self) -> bool:
        return self._signalled or self._request.exists()

    def check(self) -> None:
        if self.requested():
            raise Cancelled("signal" if self._signalled else f"{REQUEST_FILE} found")
