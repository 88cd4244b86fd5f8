"""The JSON-lines event stream on stdout and the exit codes (docs/contract.md, "Event stream").

stdout carries only these lines; everything meant for people goes to stderr.
"""

import json
import sys
import traceback as traceback_module

SCHEMA = "rubble.events/1"

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_USAGE = 2  # argparse's own exit status for a bad command line
EXIT_CANCELLED = 130  # 128 + SIGINT, the shell convention for "interrupted"

# Captured at import, before the CLI points sys.stdout at stderr so that stray prints from
# libraries cannot corrupt the stream.
_stream = sys.stdout


class BackendError(Exception):
    """A failure the user can act on: becomes one `error` event and exit status 1."""

    def __init__(self, code: str, message: str, hint: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint


def _emit(event_type: str, **fields) -> None:
    line = json.dumps({"schema": SCHEMA, "type": event_type, **fields}, ensure_ascii=False)
    _stream.write(line + "\n")
    _stream.flush()


def progress(stage: str, done: int, total: int, message: str = "") -> None:
    _emit("progress", stage=stage, done=done, total=total, message=message)


def warning(code: str, message: str) -> None:
    print(f"WARNING [{code}] {message}", file=sys.stderr)
    _emit("warning", code=code, message=message)


def result(stage: str, outputs: list[str], **extra) -> None:
    _emit("result", stage=stage, outputs=outputs, **extra)


def error(code: str, message: str, hint: str, exc: BaseException | None = None) -> None:
    text = "".join(traceback_module.format_exception(exc)) if exc is not None else ""
    print(f"ERROR [{code}] {message}\n  hint: {hint}", file=sys.stderr)
    _emit("error", code=code, message=message, hint=hint, traceback=text)


def cancelled(message: str, kept: list[str]) -> None:
    print(f"CANCELLED {message}", file=sys.stderr)
    _emit("cancelled", message=message, kept=kept)
