"""`doctor`: what this machine has and lacks for generation, in words a user can act on."""

import platform
import sys
from importlib import metadata

from . import models, protocol, tiny_model
from .shot import ModelSettings

PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "openexr", "numpy", "pillow")


def check(model: ModelSettings, tiny_location) -> dict:
    import torch

    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    real = models.real_spec(model)
    missing = models.missing_files(real)
    unpinned = models.unpinned_revisions(real)
    for message in unpinned:
        protocol.warning("revision_not_pinned", message)
    report = {
        "versions": versions,
        "gpu": gpu,
        "real_weights": {
            "present": not missing,
            "models": [s.name for s in real.sources],
            "missing": missing,
            "unpinned": unpinned,  # hub models named by a branch or tag, not a commit
        },
        "tiny_model": {"path": str(tiny_location), "present": tiny_model.is_tiny_model(tiny_location)},
    }
    _print(report, models.download_hint(real))
    return report


def _print(report: dict, hint: str) -> None:
    lines = ["Rubble backend doctor"]
    lines += [f"  {name:<13}{version or 'MISSING'}" for name, version in report["versions"].items()]
    lines.append(f"  GPU          {report['gpu'] or 'none (CPU only: real weights will be very slow)'}")
    real = report["real_weights"]
    if real["present"]:
        lines.append(f"  weights      present: {', '.join(real['models'])}")
    else:
        lines.append(f"  weights      MISSING ({len(real['missing'])} files) for {', '.join(real['models'])}")
        lines.append(f"               {hint}")
    if real["unpinned"]:
        lines.append(f"  revisions    {len(real['unpinned'])} not pinned to a commit (warnings above say how to pin)")
    tiny = report["tiny_model"]
    state = "present" if tiny["present"] else "absent (built on first use, or: python -m inference tiny-model DIR)"
    lines.append(f"  tiny model   {tiny['path']}: {state}")
    print("\n".join(lines), file=sys.stderr)
