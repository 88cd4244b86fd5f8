"""Loaded pipelines kept between runs of a warm backend (`python -m inference serve`, inference/serve.py).

A family asks for its pipeline by a key that holds everything that decides what was loaded and how it
was set up afterwards: the model by content (never a path: a tiny model rebuilt in place is another
model), the device, the dtype, the [memory] switches, and the family's own per-run set-up (FreeNoise
settings, a motion LoRA). The same key gives the same object back; any other key drops the old
pipeline first (one model in memory at a time: two SD1.5 pipelines do not fit on many GPUs) and loads.

Off by default: a one-shot `python -m inference generate` process loads, runs and exits as before;
only the server turns it on. Each request says on the event stream whether it loaded or reused
(a `progress` event of stage "model"), so a client and the tests can see a warm start.
"""

from . import files, protocol

_enabled = False
_key: str | None = None
_pipe = None
loads = 0  # pipelines loaded since the process started (a warm server reports it in `status`)


def enable() -> None:
    global _enabled
    _enabled = True


def get(key: dict, load):
    """The pipeline for `key`: the kept one when the key matches, else `load()` (kept when enabled)."""
    global _key, _pipe, loads
    digest = files.sha256_json(key)
    if _enabled and _pipe is not None and digest == _key:
        protocol.progress("model", 1, 1, "reused the loaded pipeline (warm backend)")
        return _pipe
    discard()
    pipe = load()
    loads += 1
    if _enabled:
        _key, _pipe = digest, pipe
    protocol.progress("model", 1, 1, f"loaded the pipeline (load {loads} of this process)")
    return pipe


def discard() -> None:
    """Forget the kept pipeline (a model change, or a run that changed it, e.g. CPU offload after OOM)."""
    global _key, _pipe
    if _pipe is None:
        return
    _key, _pipe = None, None
    import gc

    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()  # give the old weights' blocks back before the new ones load
    except ImportError:
        pass
