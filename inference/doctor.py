"""`doctor`: what this machine has and lacks for generation, in words a user can act on."""

import dataclasses
import os
import platform
import shutil
import sys
from importlib import metadata
from pathlib import Path

from . import protocol
from .protocol import BackendError

PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "openexr", "numpy", "pillow")


def _free_disk_gb(path: Path) -> float:
    """Free space where the weights go (the Hugging Face cache), at its nearest existing folder."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return round(shutil.disk_usage(path).free / 2**30, 1)


def _gpu(torch) -> tuple[str | None, float | None]:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0), round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "Apple MPS (memory shared with the system)", None
    return None, None


def check(load_model, tiny_option: str | None, load_extra_sources=tuple) -> dict:
    """`load_model()`: the preset's ModelSettings, called only once the packages are known to be
    there (reading a preset imports numpy); `load_extra_sources()`: other repositories the preset
    loads (the [upscale] upscaler), checked as the model's are."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    hf_home = Path(os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface")
    base = {"interpreter": sys.executable, "versions": versions, "free_disk_gb": _free_disk_gb(hf_home)}
    absent = [name for name in PACKAGES if versions[name] is None]
    if absent:  # a broken or foreign environment: say what is missing before importing any of it
        _print({**base, "gpu": None, "vram_gb": None}, "")
        raise BackendError(
            "backend_incomplete", f"{', '.join(absent)} {'is' if len(absent) == 1 else 'are'} not installed "
            f"in {sys.executable}.",
            "Install the backend (Preferences > Add-ons > Rubble > Install Backend), or in that environment: "
            "pip install -r requirements/inference.txt -c requirements/inference.lock.txt")
    import torch

    from . import detectors, models, tiny_model

    model = load_model()

    gpu, vram = _gpu(torch)
    tiny_location = models.tiny_dir(tiny_option)
    real = models.real_spec(model)
    real = dataclasses.replace(real, sources=real.sources + tuple(load_extra_sources()))
    missing = models.missing_files(real)
    unpinned = models.unpinned_revisions(real)
    for message in unpinned:
        protocol.warning("revision_not_pinned", message)
    report = {
        **base,
        "gpu": gpu,
        "vram_gb": vram,
        "real_weights": {
            "present": not missing,
            "models": [s.name for s in real.sources],
            "missing": missing,
            "unpinned": unpinned,  # hub models named by a branch or tag, not a commit
        },
        "tiny_model": {"path": str(tiny_location), "present": tiny_model.is_tiny_model(tiny_location)},
        # The [[controls]]' detectors that need weights (lineart): without them the control stage stops.
        "detector_weights": {"missing": detectors.missing_weights(model.controls)},
    }
    _print(report, models.download_hint(real))
    return report


def _print(report: dict, hint: str) -> None:
    lines = ["Rubble backend doctor", f"  interpreter  {report['interpreter']}"]
    lines += [f"  {name:<13}{version or 'MISSING'}" for name, version in report["versions"].items()]
    vram = f", {report['vram_gb']} GiB" if report["vram_gb"] else ""
    lines.append(f"  GPU          {(report['gpu'] or 'none (CPU only: real weights will be very slow)') + vram}")
    lines.append(f"  free disk    {report['free_disk_gb']} GiB (Hugging Face cache)")
    if "real_weights" not in report:  # stopped early: packages missing
        print("\n".join(lines), file=sys.stderr)
        return
    real = report["real_weights"]
    if real["present"]:
        lines.append(f"  weights      present: {', '.join(real['models'])}")
    else:
        lines.append(f"  weights      MISSING ({len(real['missing'])} files) for {', '.join(real['models'])}")
        lines.append(f"               {hint}")
    if real["unpinned"]:
        lines.append(f"  revisions    {len(real['unpinned'])} not pinned to a commit (warnings above say how to pin)")
    if report["detector_weights"]["missing"]:
        lines.append(f"  detectors    MISSING {', '.join(report['detector_weights']['missing'])} "
                     "(hf download lllyasviel/Annotators sk_model.pth sk_model2.pth)")
    tiny = report["tiny_model"]
    state = "present" if tiny["present"] else "absent (built on first use, or: python -m inference tiny-model DIR)"
    lines.append(f"  tiny model   {tiny['path']}: {state}")
    print("\n".join(lines), file=sys.stderr)
