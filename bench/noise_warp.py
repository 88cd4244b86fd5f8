"""Flow-warped noise and video-to-video on the tiny model: what warping costs next to a window's
generation, and the temporal warp error (inference/temporal.py) with [noise] mode "fresh" vs "warped",
and with [look] strength 1.0 (text-to-video) vs 0.6 (video-to-video from the clay), on the same shot.

One 16-frame shot at the preset's generation size (512x320, 20 steps, one window of 16 frames) is
generated three times: fresh noise, warped noise, and fresh noise at strength 0.6. With random
weights the error's absolute value means little; the code path and the measurement are what this shows.

Run: .venv-inference/bin/python bench/noise_warp.py   (prints one JSON line per measurement)
"""

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests" / "inference"))
from conftest import make_shot  # noqa: E402  (the synthetic Blender-layout shot the tests use)

from inference import noise_warp  # noqa: E402
from inference import shot as shot_module  # noqa: E402


def backend(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "inference", *args], cwd=REPO, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr)


V2V_STRENGTH = 0.6


def shot_with_noise(directory: Path, mode: str, strength: float = 1.0) -> Path:
    shot = make_shot(directory, frames=16, size=(320, 192), model={"width": 512, "height": 320, "window": 16, "overlap": 4},
                     look={"steps": 20, "strength": strength})
    data = json.loads((shot / "shot.json").read_text())
    data["preset"]["noise"] = {"mode": mode, "strength": 1.0}
    (shot / "shot.json").write_text(json.dumps(data))
    return shot


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny"
        backend("tiny-model", str(tiny))
        errors = {}
        for mode in ("fresh", "warped"):
            shot = shot_with_noise(Path(tmp) / mode, mode)
            backend("generate", str(shot), "--tiny-model", str(tiny))
            provenance = json.loads((shot / "provenance.json").read_text())
            errors[mode] = provenance["temporal_warp_error"]
            record = json.loads((shot / "windows" / "000" / "record.json").read_text())
            if mode == "warped":
                # The same warp again in this process, best of 5 (the record's figure is one cold run).
                loaded = shot_module.load(shot)
                best = float("inf")
                for _ in range(5):
                    started = time.perf_counter()
                    noise_warp.shot_latents(loaded)
                    best = min(best, time.perf_counter() - started)
                print(json.dumps({
                    "what": "warped noise for 16 frames at 64x40 latents vs one 16-frame window (tiny model, 512x320, 20 steps, CPU)",
                    "noise_seconds_in_generate": record["noise_seconds"],
                    "noise_seconds_best_of_5": round(best, 4),
                    "window_seconds": record["seconds"],
                    "share_of_window": round(record["noise_seconds"] / record["seconds"], 4),
                }))
        print(json.dumps({
            "what": "temporal warp error (MSE, RGB 0-1), same tiny-model shot, [noise] fresh vs warped",
            "fresh": {"all": errors["fresh"]["all"], **errors["fresh"]["roles"]},
            "warped": {"all": errors["warped"]["all"], **errors["warped"]["roles"]},
        }))
        shot = shot_with_noise(Path(tmp) / "v2v", "fresh", V2V_STRENGTH)
        backend("generate", str(shot), "--tiny-model", str(tiny))
        v2v = json.loads((shot / "provenance.json").read_text())["temporal_warp_error"]
        print(json.dumps({
            "what": f"temporal warp error (MSE, RGB 0-1), same tiny-model shot, fresh noise, [look] strength 1.0 "
                    f"(text-to-video) vs {V2V_STRENGTH} (video-to-video from the clay)",
            "text_to_video": {"all": errors["fresh"]["all"], **errors["fresh"]["roles"]},
            "video_to_video": {"all": v2v["all"], **v2v["roles"]},
        }))


if __name__ == "__main__":
    main()
