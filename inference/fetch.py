"""`fetch`: download exactly the files the preset's models need into the Hugging Face cache.

The files are those inference/models.py loads (its requirement lists, one source of truth):
configs, tokenizer files and safetensors weights, never pickled checkpoints (.bin, .ckpt).
Weights come as diffusers' fp16 variant by default (half the download; what generation on a
GPU computes in) or as the full files (`--variant full`); a repository without the preferred
file gets the other. A model whose files are already in the cache is not asked about, so a
complete cache needs no network at all. Nothing else in the backend downloads.
"""

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from . import models, protocol
from .protocol import BackendError

VARIANTS = ("fp16", "full")
DEFAULT_VARIANT = "fp16"
PROGRESS_INTERVAL_S = 0.5  # at most two byte-progress events a second while a file downloads


@dataclass
class Fetched:
    """One model's part of the report: what it needs, and whether it was fetched, present or local."""

    source: models.Source
    state: str  # "present", "fetched", "local" (a directory: nothing to fetch) or "failed"
    files: dict[str, int] = field(default_factory=dict)  # file -> bytes
    commit: str | None = None
    reason: str = ""  # why it failed

    def record(self) -> dict:
        return {
            "role": self.source.role,
            "id": self.source.location,
            "revision": self.source.revision,
            "commit": self.commit,
            "state": self.state,
            "files": self.files,
            "bytes": sum(self.files.values()),
        }


def select(source: models.Source, listing: Iterable[str], variant: str) -> tuple[list[str], list[str]]:
    """The files to fetch from a repository that holds `listing`: per requirement, the first option
    whose files are all listed (fp16 weights first for variant "fp16", else the full files first),
    then the optional files that are listed. Returns (files, requirements the listing cannot meet)."""
    listed = set(listing)
    chosen, unmet = [], []
    for options in source.required:
        ordered = sorted(options, key=lambda o: _is_fp16(o) != (variant == models.FP16))  # stable
        option = next((o for o in ordered if all(f in listed for f in o)), None)
        if option is None:
            unmet.append(" or ".join(" + ".join(o) for o in options))
        else:
            chosen += option
            for index in (f for f in option if f.endswith(models.INDEX)):  # sharded weights: the shards too
                folder, _, name = index.rpartition("/")
                pattern = models.shard_pattern(name)
                chosen += sorted(f for f in listed if f.rpartition("/")[0] == folder
                                 and pattern.fullmatch(f.rpartition("/")[2]))
    chosen += [f for f in source.optional if f in listed]
    return chosen, unmet


def _is_fp16(option: tuple[str, ...]) -> bool:
    return any(f.endswith(f".{models.FP16}.safetensors") for f in option)


def run(spec: models.ModelSpec, variant: str = DEFAULT_VARIANT) -> dict:
    """Fetch what the cache lacks; the report for the `fetch` result event. Raises BackendError
    naming every model it could not get."""
    from huggingface_hub import constants

    report = [_cached(source) for source in spec.sources]
    wanted = [r for r in report if r.state == "missing"]
    if wanted and constants.is_offline_mode():
        raise BackendError(
            "offline",
            "HF_HUB_OFFLINE=1 forbids downloads, and these models are not complete in the Hugging Face cache ("
            f"{constants.HF_HUB_CACHE}): {_names(wanted)}.",
            "Run `python -m inference fetch` again without HF_HUB_OFFLINE on a machine with network access, "
            "or copy a Hugging Face cache that has them (HF_HOME or HF_HUB_CACHE points at it).",
        )
    if wanted:
        _download(wanted, variant)
    failed = [r for r in report if r.state == "failed"]
    if failed:
        reasons = "; ".join(f"{r.source.location}@{r.source.revision}: {r.reason}" for r in failed)
        fetched = _names([r for r in report if r.state == "fetched"])
        raise BackendError(
            "fetch_failed",
            f"Could not fetch {len(failed)} of the preset's models ({reasons}). "
            + (f"Fetched and kept: {fetched}." if fetched else "Nothing was fetched."),
            "Check the model ids and revisions in the preset's [model] section and [[controls]] tables, and "
            "this machine's network access to huggingface.co (HF_ENDPOINT, proxies); a gated model needs "
            "`hf auth login` first. "
            "Then run fetch again: files already fetched are not downloaded again.",
        )
    for message in models.unpinned_revisions(spec):
        protocol.warning("revision_not_pinned", message)
    records = [r.record() for r in report]
    _print(report, constants.HF_HUB_CACHE)
    return {
        "models": records,
        "variant": variant,
        "cache": str(constants.HF_HUB_CACHE),
        "fetched_bytes": sum(r["bytes"] for r in records if r["state"] == "fetched"),
        "total_bytes": sum(r["bytes"] for r in records),
    }


def _cached(source: models.Source) -> Fetched:
    """What the cache (or the local directory) already holds for a source."""
    if source.directory is not None:
        present = source.present_files()
        if present is None:
            return Fetched(source, "failed", reason=f"a local directory missing {_missing(source)}; "
                                                   "fetch only fills the Hugging Face cache")
        return Fetched(source, "local", _sizes(source, present + _optional_present(source)))
    present = source.present_files()
    if present is None:
        return Fetched(source, "missing")
    files = present + _optional_present(source)
    path = source.find(files[0])
    commit = path.parents[len(Path(files[0]).parts) - 1].name  # …/snapshots/<commit>/<file>
    return Fetched(source, "present", _sizes(source, files), commit)


def _optional_present(source: models.Source) -> list[str]:
    return [f for f in source.optional if source.find(f) is not None]


def _sizes(source: models.Source, files: list[str]) -> dict[str, int]:
    return {f: source.find(f).stat().st_size for f in files}


def _missing(source: models.Source) -> str:
    return ", ".join(" or ".join(" + ".join(o) for o in options) for options in source.required
                     if not any(all(source.find(f) is not None for f in o) for o in options))


def _names(entries: list[Fetched]) -> str:
    return ", ".join(f"{e.source.location}@{e.source.revision}" for e in entries)


def _download(wanted: list[Fetched], variant: str) -> None:
    """Ask the hub what each repository holds at its revision, pick the files, download them
    smallest first (so a complete set of weights implies the configs), then check the cache."""
    from huggingface_hub import HfApi, hf_hub_download

    api = HfApi()
    plans = []
    for entry in wanted:
        source = entry.source
        try:
            info = api.model_info(source.location, revision=source.revision, files_metadata=True)
        except Exception as exc:  # not found, gated, no network: reported per model, the others go on
            entry.state, entry.reason = "failed", _reason(exc)
            continue
        sizes = {s.rfilename: int(s.size or 0) for s in info.siblings or []}
        files, unmet = select(source, sizes, variant)
        if unmet:
            entry.state = "failed"
            entry.reason = f"commit {info.sha} has none of: {'; '.join(unmet)}"
            continue
        entry.commit, entry.files = info.sha, {f: sizes[f] for f in files}
        plans.append(entry)

    total = sum(sum(e.files.values()) for e in plans)
    done = 0
    if plans:
        protocol.progress("fetch", 0, total, f"{len(plans)} models, {_human(total)}")
    for entry in plans:
        source = entry.source
        try:
            for name, size in sorted(entry.files.items(), key=lambda item: (item[1], item[0])):
                print(f"  {source.location}: {name} ({_human(size)})", file=sys.stderr)
                hf_hub_download(source.location, name, revision=source.revision,
                                tqdm_class=_progress_bar(done, total, f"{source.location}: {name}"))
                done += size
                protocol.progress("fetch", done, total, f"{source.location}: {name}")
        except Exception as exc:
            entry.state, entry.reason = "failed", _reason(exc)
            continue
        if source.present_files() is None:  # e.g. a revision whose weights are not safetensors-loadable
            entry.state, entry.reason = "failed", f"still missing after the download: {_missing(source)}"
        else:
            entry.state = "fetched"


def _reason(exc: Exception) -> str:
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {first_line}"[:300]


def _progress_bar(before: int, total: int, label: str):
    """A tqdm class for hf_hub_download that turns its byte counts into throttled progress events."""
    from tqdm.auto import tqdm

    class Progress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True  # the events replace the bar
            super().__init__(*args, **kwargs)
            self._bytes, self._last = 0, 0.0

        def update(self, n=1):
            self._bytes += n or 0
            now = time.monotonic()
            if now - self._last >= PROGRESS_INTERVAL_S:
                self._last = now
                protocol.progress("fetch", min(before + self._bytes, total), total, label)
            return super().update(n)

    return Progress


def _human(size: float) -> str:
    if size < 1000:
        return f"{size:.0f} B"
    for unit in ("kB", "MB"):
        size /= 1000
        if size < 1000:
            return f"{size:.1f} {unit}"
    return f"{size / 1000:.2f} GB"


def _print(report: list[Fetched], cache: str) -> None:
    lines = [f"Model files in {cache}:"]
    for entry in report:
        where = str(entry.source.directory) if entry.state == "local" else f"{entry.source.location}@{entry.source.revision}"
        lines.append(f"  {entry.state:<8} {where}: {len(entry.files)} files, {_human(sum(entry.files.values()))}"
                     + (f" (commit {entry.commit})" if entry.commit else ""))
    fetched = sum(sum(e.files.values()) for e in report if e.state == "fetched")
    lines.append(f"  fetched {_human(fetched)}; in all {_human(sum(sum(e.files.values()) for e in report))}")
    print("\n".join(lines), file=sys.stderr)
