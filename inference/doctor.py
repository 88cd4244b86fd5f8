"""`doctor`: what this machine has and lacks for generation, in words a user can act on."""

import platform
import sys
from importlib import metadata

from . import detectors, models, tiny_model
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
    report = {
        "versions": versions,
        "gpu": gpu,
        "real_weights": {
            "present": not missing,
            "models": [s.name for s in real.sources],
            "missing": missing,
        },
        "tiny_model": {"path": str(tiny_location), "present": tiny_model.is_tiny_model(tiny_location)},
        # The [[controls]]' detectors that need weights (lineart): without them the control stage stops.
        "detector_weights": {"missing": detectors.missing_weights(model.controls)},
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
    if report["detector_weights"]["missing"]:
        lines.append(f"  detectors    MISSING {', '.join(report['detector_weights']['missing'])} "
                     "(hf download lllyasviel/Annotators sk_model.pth sk_model2.pth)")
    tiny = report["tiny_model"]
    state = "present" if tiny["present"] else "absent (built on first use, or: python -m inference tiny-model DIR)"
    lines.append(f"  tiny model   {tiny['path']}: {state}")
    print("\n".join(lines), file=sys.stderr)
