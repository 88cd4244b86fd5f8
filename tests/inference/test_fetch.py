"""`fetch` without a network: the refusals, which files it picks per model and variant, the cache
lookup on a Hugging Face cache laid out here, the tiny model's layout against the same file lists,
and the warning about revisions that are branch names. Every run points HF_ENDPOINT at a closed
local port, so a request that should not happen fails instead of reaching the hub."""

import json
import socket
import tomllib
from pathlib import Path

import pytest

from conftest import REPO, make_shot, run_backend
from inference import fetch, models
from inference import tiny_model as tiny_model_module
from inference import shot as shot_module
from test_models import hub_cache  # noqa: F401 (a fixture)
from test_models import IDS, KINDS, ROLES, fake_hub_cache, hub_settings, preset_parts

PICKLES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")
# The draft tier ([draft]) at test repositories: its motion adapter is the tiny model's second adapter.
DRAFT = {"motion_adapter": "rubble-test/animatelcm", "motion_adapter_revision": "main", "lora": "rubble-test/lcm-lora",
         "lora_revision": "main", "lora_weight_name": "lcm_lora.safetensors"}
DRAFT_ADAPTER = tiny_model_module.DRAFT_MOTION_ADAPTER


@pytest.fixture
def closed_endpoint():
    """An HTTP endpoint on this machine that refuses every connection: a port bound, never listened on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def hub_model(revisions: dict[str, str] | None = None) -> tuple[dict, list[dict]]:
    """[model] overrides and [[controls]] naming the test repositories (IDS) at `revisions`
    (role -> revision, the roles IDS' keys; default "main")."""
    revisions = revisions or {}
    model, controls = preset_parts(IDS)
    model.update({f"{role}_revision": revisions[role] for role in ("base", "motion_adapter") if role in revisions})
    for control in controls:
        control["revision"] = revisions.get(models.controlnet_role(control["kind"]), control["revision"])
    return model, controls


def hub_spec(revisions: dict[str, str] | None = None) -> models.ModelSpec:
    """The real-weight spec of the default preset with hub_model(revisions) in it."""
    model, controls = hub_model(revisions)
    default = tomllib.loads((REPO / "presets" / "default.toml").read_text(encoding="utf-8"))["model"]
    return models.real_spec(shot_module.model_settings({**default, **model}, controls))


def fetch_env(cache: Path, endpoint: str, offline: bool) -> dict:
    return {"HF_HUB_CACHE": str(cache), "HF_ENDPOINT": endpoint, "HF_HUB_OFFLINE": "1" if offline else "0",
            "HF_HUB_DISABLE_TELEMETRY": "1"}


# --- which files: the loader's lists, per model and variant ---------------------------------------

# The hub repositories' file names (weights, pickles, extras), as their "Files and versions" pages list them.
SD15 = [
    ".gitattributes", "README.md", "model_index.json", "v1-5-pruned-emaonly.ckpt", "v1-5-pruned-emaonly.safetensors",
    "v1-5-pruned.ckpt", "v1-5-pruned.safetensors", "v1-inference.yaml", "feature_extractor/preprocessor_config.json",
    "safety_checker/config.json", "safety_checker/model.safetensors", "safety_checker/model.fp16.safetensors",
    "safety_checker/pytorch_model.bin", "safety_checker/pytorch_model.fp16.bin", "scheduler/scheduler_config.json",
    "text_encoder/config.json", "text_encoder/model.safetensors", "text_encoder/model.fp16.safetensors",
    "text_encoder/pytorch_model.bin", "text_encoder/pytorch_model.fp16.bin", "tokenizer/merges.txt",
    "tokenizer/special_tokens_map.json", "tokenizer/tokenizer_config.json", "tokenizer/vocab.json",
    "unet/config.json", "unet/diffusion_pytorch_model.bin", "unet/diffusion_pytorch_model.fp16.bin",
    "unet/diffusion_pytorch_model.fp16.safetensors", "unet/diffusion_pytorch_model.non_ema.bin",
    "unet/diffusion_pytorch_model.non_ema.safetensors", "unet/diffusion_pytorch_model.safetensors",
    "vae/config.json", "vae/diffusion_pytorch_model.bin", "vae/diffusion_pytorch_model.fp16.bin",
    "vae/diffusion_pytorch_model.fp16.safetensors", "vae/diffusion_pytorch_model.safetensors",
]
CONTROLNET = [".gitattributes", "README.md", "config.json", "diffusion_pytorch_model.bin",
              "diffusion_pytorch_model.fp16.bin", "diffusion_pytorch_model.fp16.safetensors",
              "diffusion_pytorch_model.safetensors", "images/control.png", "images/input.png", "sd.png"]
BASE_COMMON = {"model_index.json", "scheduler/scheduler_config.json", "text_encoder/config.json", "unet/config.json",
               "vae/config.json", "tokenizer/merges.txt", "tokenizer/vocab.json", "tokenizer/tokenizer_config.json",
               "tokenizer/special_tokens_map.json"}
WEIGHTS = ("unet/diffusion_pytorch_model", "vae/diffusion_pytorch_model", "text_encoder/model")


def test_the_base_gets_the_pipeline_files_in_the_variant_asked_for_never_pickles():
    base = models.real_spec(hub_settings()).source("base")
    fp16, unmet = fetch.select(base, SD15, "fp16")
    assert not unmet
    assert sorted(fp16) == sorted(BASE_COMMON | {f"{w}.fp16.safetensors" for w in WEIGHTS})
    full, _ = fetch.select(base, SD15, "full")
    assert sorted(full) == sorted(BASE_COMMON | {f"{w}.safetensors" for w in WEIGHTS})
    assert not any(f.endswith(PICKLES) for f in fp16 + full)
    assert not any(f.startswith(("safety_checker/", "feature_extractor/", "v1-5-pruned")) for f in fp16 + full)


def test_a_single_model_repository_falls_back_to_the_variant_it_has():
    controlnet = models.real_spec(hub_settings()).source(models.controlnet_role("depth"))
    assert fetch.select(controlnet, CONTROLNET, "fp16") == (
        ["config.json", "diffusion_pytorch_model.fp16.safetensors"], [])
    assert fetch.select(controlnet, CONTROLNET, "full") == (["config.json", "diffusion_pytorch_model.safetensors"], [])
    no_fp16 = [f for f in CONTROLNET if ".fp16." not in f]
    assert fetch.select(controlnet, no_fp16, "fp16")[0] == ["config.json", "diffusion_pytorch_model.safetensors"]
    only_fp16 = [f for f in CONTROLNET if not f.endswith("model.safetensors")]
    assert fetch.select(controlnet, only_fp16, "full")[0] == ["config.json", "diffusion_pytorch_model.fp16.safetensors"]


def test_a_repository_with_only_pickles_is_named_not_fetched():
    adapter = models.real_spec(hub_settings()).source("motion_adapter")
    files, unmet = fetch.select(adapter, ["config.json", "diffusion_pytorch_model.bin"], "fp16")
    assert files == ["config.json"]
    assert unmet == ["diffusion_pytorch_model.safetensors or diffusion_pytorch_model.fp16.safetensors"]


def test_the_tiny_model_has_the_hub_layout_the_fetch_lists_describe(tiny_model):
    every_kind = [shot_module.Control(kind, f"tiny/{kind}", "main", 1.0, 0.0, 1.0) for kind in shot_module.CONTROL_KINDS]
    spec = models.tiny_spec(tiny_model, every_kind)
    for source in spec.sources:
        present = sorted(str(p.relative_to(source.directory)) for p in source.directory.rglob("*") if p.is_file())
        selected, unmet = fetch.select(source, present, "full")
        assert not unmet and sorted(selected) == present, source.role
    base = spec.source("base").directory
    index = json.loads((base / "model_index.json").read_text())
    assert index["_class_name"] == "StableDiffusionPipeline"
    components = {name for name, value in index.items() if isinstance(value, list) and value[0] is not None}
    assert components == {"unet", "vae", "text_encoder", "tokenizer", "scheduler"}
    assert components == {p.name for p in base.iterdir() if p.is_dir()}


# --- the command: refusals and the cache lookup, never the network -------------------------------

def test_offline_fetch_refuses_and_names_every_model(tmp_path, closed_endpoint):
    shot = make_shot(tmp_path / "shot", frames=1)
    run = run_backend("fetch", str(shot), env=fetch_env(tmp_path / "hub", closed_endpoint, offline=True))
    assert run.returncode == 1, run.stderr
    (error,) = run.of_type("error")
    assert error["code"] == "offline"
    for repo in ("stable-diffusion-v1-5/stable-diffusion-v1-5", "guoyww/animatediff-motion-adapter-v1-5-3",
                 "lllyasviel/control_v11f1p_sd15_depth", "lllyasviel/control_v11p_sd15_normalbae"):
        assert repo in error["message"]
    assert "HF_HUB_OFFLINE" in error["hint"] and "network access" in error["hint"]
    assert not (tmp_path / "hub").exists(), "an offline refusal writes nothing"


def test_an_unreachable_hub_names_every_model_it_could_not_get(tmp_path, closed_endpoint):
    model, controls = hub_model()
    shot = make_shot(tmp_path / "shot", frames=1, model=model, controls=controls)
    run = run_backend("fetch", str(shot), env=fetch_env(tmp_path / "hub", closed_endpoint, offline=False))
    assert run.returncode == 1, run.stderr
    (error,) = run.of_type("error")
    assert error["code"] == "fetch_failed" and "Nothing was fetched" in error["message"]
    assert all(f"{repo}@main" in error["message"] for repo in IDS.values())
    assert "network access" in error["hint"]


def write_preset(path: Path, model: dict, controls: list[dict]) -> Path:
    """A preset file with only the tables `fetch --preset` reads: the default's [model] changed by
    `model`, and `controls` as its [[controls]] (an array of tables)."""
    default = tomllib.loads((REPO / "presets" / "default.toml").read_text(encoding="utf-8"))["model"]
    lines = ["[model]"] + [f"{k} = {json.dumps(v)}" for k, v in {**default, **model}.items()]  # JSON str/num is TOML
    for control in controls:
        lines += ["", "[[controls]]"] + [f"{k} = {json.dumps(v)}" for k, v in control.items()]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert tomllib.loads(path.read_text(encoding="utf-8"))["controls"] == controls
    return path


def test_a_complete_cache_fetches_nothing_even_offline(tiny_model, tmp_path, closed_endpoint):
    snapshots = fake_hub_cache(tiny_model, tmp_path / "hub", fp16=True, symlinks=True)
    preset = write_preset(tmp_path / "preset.toml", *hub_model({"base": snapshots["base"].name}))  # base pinned
    for offline in (False, True):
        run = run_backend("fetch", "--preset", str(preset), "--no-draft",  # the cache holds the final's models
                          env=fetch_env(tmp_path / "hub", closed_endpoint, offline))
        assert run.returncode == 0, run.stderr + json.dumps(run.of_type("error"))
        assert not run.of_type("progress"), "nothing to download, so no download progress"
        (result,) = run.of_type("result")
        assert result["fetched_bytes"] == 0 and result["variant"] == "fp16"
        for record in result["models"]:
            snapshot = snapshots[record["role"]]
            assert record["state"] == "present" and record["commit"] == snapshot.name
            on_disk = {str(p.relative_to(snapshot)): p.stat().st_size for p in snapshot.rglob("*") if p.is_file()}
            assert record["files"] == on_disk, "every file the loader reads, with its size"
        assert result["total_bytes"] == sum(sum(r["files"].values()) for r in result["models"])
        # The branch-named revisions (all but the base's) are warned about, each with the commit the
        # cache's refs/main names and the preset setting that pins it.
        warnings = {w["message"].split(":")[0]: w["message"] for w in run.of_type("warning")
                    if w["code"] == "revision_not_pinned"}
        assert sorted(warnings) == sorted(repo for role, repo in IDS.items() if role != "base")
        assert (f'set [model] motion_adapter_revision = "{snapshots["motion_adapter"].name}"'
                in warnings[IDS["motion_adapter"]])
        for kind in KINDS:
            role = models.controlnet_role(kind)
            assert (f'set the [[controls]] table of kind {kind!r}: revision = "{snapshots[role].name}"'
                    in warnings[IDS[role]])


# --- revisions that are branch names --------------------------------------------------------------

def test_unpinned_revisions_say_how_to_pin(hub_cache):
    commit = "a" * 40
    refs = hub_cache / f"models--{IDS['base'].replace('/', '--')}" / "refs"
    refs.mkdir(parents=True)
    (refs / "main").write_text(commit)
    unpinned = models.unpinned_revisions(hub_spec())
    assert len(unpinned) == len(IDS), "every source is at main"
    messages = dict(zip(IDS, unpinned))  # in the spec's order: base, motion adapter, the controls
    assert all(message.startswith(f"{IDS[role]}: revision 'main'") for role, message in messages.items())
    assert f'set [model] base_revision = "{commit}"' in messages["base"]
    depth = models.controlnet_role("depth")
    assert "Set the [[controls]] table of kind 'depth': revision to a 40-digit commit hash" in messages[depth]
    assert "presets/README.md" in messages[depth]
    assert f"https://huggingface.co/{IDS[depth]}/commits/main" in messages[depth]
    assert models.unpinned_revisions(hub_spec({role: commit for role in IDS})) == []
    assert len(models.unpinned_revisions(hub_spec({role: commit for role in IDS if role != depth}))) == 1


def test_validate_check_weights_warns_about_a_branch_name(tmp_path):
    controls = tomllib.loads((REPO / "presets" / "default.toml").read_text(encoding="utf-8"))["controls"]
    controls[0]["revision"] = "main"  # depth at a branch name, normal still pinned
    shot = make_shot(tmp_path / "shot", frames=1, model={"base_revision": "main"}, controls=controls)
    run = run_backend("validate", str(shot), "--check-weights", env={"HF_HUB_CACHE": str(tmp_path / "hub")})
    assert run.returncode == 0, run.stderr
    messages = [w["message"] for w in run.of_type("warning") if w["code"] == "revision_not_pinned"]
    assert any(m.startswith("stable-diffusion-v1-5/stable-diffusion-v1-5: revision 'main'") for m in messages)
    assert any(m.startswith(f"{controls[0]['model']}: revision 'main'")
               and "the [[controls]] table of kind 'depth': revision" in m for m in messages)
    assert not any(m.startswith(("guoyww/", controls[1]["model"])) for m in messages), "a commit hash is pinned"


# --- the download itself, from a hub served on this machine ---------------------------------------

class FakeHub:
    """The hub's two HTTP routes that `fetch` uses, serving the tiny model as the test repositories
    (IDS) plus pickled copies of every weight file, and logging every request it gets."""

    COMMIT = "c" * 40

    def __init__(self, tiny: Path):
        import hashlib

        self.files = {}  # repo -> {name: bytes}
        folders = {**{IDS[role]: tiny / ROLES[role] for role in IDS}, DRAFT["motion_adapter"]: tiny / DRAFT_ADAPTER}
        for repo, root in folders.items():
            files = {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}
            files.update({n.replace(".safetensors", ".bin"): b"pickle" for n in list(files) if n.endswith(".safetensors")})
            self.files[repo] = files
        self.files[DRAFT["lora"]] = {DRAFT["lora_weight_name"]: b"lora weights", "README.md": b"# a LoRA"}
        self.sha256 = {(r, n): hashlib.sha256(b).hexdigest() for r, fs in self.files.items() for n, b in fs.items()}
        self.requests = []

    def handler(self):
        import http.server
        from urllib.parse import unquote, urlparse

        hub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def route(self):
                path = unquote(urlparse(self.path).path)
                hub.requests.append((self.command, path))
                for repo, files in hub.files.items():
                    if path.startswith(f"/api/models/{repo}/revision/"):
                        body = json.dumps({"id": repo, "sha": hub.COMMIT, "siblings": [
                            {"rfilename": n, "size": len(b)} for n, b in files.items()]}).encode()
                        return 200, {"Content-Type": "application/json"}, body
                    prefix = f"/{repo}/resolve/"
                    if path.startswith(prefix):
                        name = path[len(prefix):].split("/", 1)[1]
                        if name in files:
                            return 200, {"X-Repo-Commit": hub.COMMIT, "ETag": f'"{hub.sha256[repo, name]}"'}, files[name]
                return 404, {"X-Error-Code": "EntryNotFound"}, b"not found"

            def reply(self, with_body):
                status, headers, body = self.route()
                self.send_response(status)
                for key, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(key, value)
                self.end_headers()
                if with_body:
                    self.wfile.write(body)

            def do_HEAD(self):
                self.reply(with_body=False)

            def do_GET(self):
                self.reply(with_body=True)

        return Handler


@pytest.fixture
def fake_hub(tiny_model):
    import http.server
    import threading

    hub = FakeHub(tiny_model)
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), hub.handler())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    hub.endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    yield hub
    server.shutdown()
    server.server_close()


def set_draft(shot: Path, **draft) -> None:
    data = json.loads((shot / "shot.json").read_text())
    data["preset"]["draft"].update(draft)
    (shot / "shot.json").write_text(json.dumps(data))


def test_fetch_downloads_exactly_the_loaders_files_and_a_second_run_nothing(fake_hub, tmp_path):
    """The final's models and the draft tier's (its motion adapter, and its LoRA's one file)."""
    model, controls = hub_model()
    shot = make_shot(tmp_path / "shot", frames=1, model=model, controls=controls)
    set_draft(shot, **DRAFT)
    env = fetch_env(tmp_path / "hub", fake_hub.endpoint, offline=False)
    run = run_backend("fetch", str(shot), "--variant", "full", env=env)
    assert run.returncode == 0, run.stderr + json.dumps(run.of_type("error"))
    (result,) = run.of_type("result")
    downloaded = {(m, p.split("/resolve/")[0][1:], p.split("/resolve/")[1].split("/", 1)[1])
                  for m, p in fake_hub.requests if "/resolve/" in p}
    for record in result["models"]:
        repo = record["id"]
        assert record["state"] == "fetched" and record["commit"] == FakeHub.COMMIT
        expected = {n: len(b) for n, b in fake_hub.files[repo].items() if n.endswith((".json", ".safetensors"))}
        assert record["files"] == expected, "every safetensors/config/tokenizer file, no pickle"
        assert {n for m, r, n in downloaded if r == repo and m == "GET"} == set(expected)
    assert [r["role"] for r in result["models"]][-2:] == ["draft_motion_adapter", "draft_lora"]
    assert result["fetched_bytes"] == result["total_bytes"] == sum(sum(r["files"].values()) for r in result["models"])
    progress = run.of_type("progress")
    assert progress[-1]["done"] == progress[-1]["total"] == result["fetched_bytes"]
    assert all(a["done"] <= b["done"] for a, b in zip(progress, progress[1:]))

    # The loader finds it all: the shot's real weights are present, and a second fetch asks the hub nothing.
    check = run_backend("validate", str(shot), "--check-weights", env=env)
    assert check.of_type("result")[0]["real_weights_present"] is True
    fake_hub.requests.clear()
    again = run_backend("fetch", str(shot), "--variant", "full", env=env)
    assert again.returncode == 0 and again.of_type("result")[0]["fetched_bytes"] == 0
    assert fake_hub.requests == []


def test_the_command_line_offers_exactly_the_fetch_variants():
    from inference.__main__ import _parser

    fetch_command = _parser()._subparsers._group_actions[0].choices["fetch"]
    (variant,) = [a for a in fetch_command._actions if a.dest == "variant"]
    assert tuple(variant.choices) == fetch.VARIANTS and variant.default == fetch.DEFAULT_VARIANT


def test_the_draft_tier_is_fetched_unless_left_out_and_its_revisions_are_named_by_their_keys(fake_hub, tmp_path):
    model, controls = hub_model()
    shot = make_shot(tmp_path / "shot", frames=1, model=model, controls=controls)
    set_draft(shot, **DRAFT)
    env = fetch_env(tmp_path / "hub", fake_hub.endpoint, offline=False)
    left_out = run_backend("fetch", str(shot), "--no-draft", env=env)
    assert left_out.returncode == 0, left_out.stderr
    assert [r["role"] for r in left_out.of_type("result")[0]["models"]] == list(IDS)
    assert not any(DRAFT["lora"] in p or DRAFT["motion_adapter"] in p for _, p in fake_hub.requests)
    run = run_backend("fetch", str(shot), env=env)
    assert run.returncode == 0, run.stderr
    warnings = [w["message"] for w in run.of_type("warning") if w["code"] == "revision_not_pinned"]
    assert any(m.startswith(f"{DRAFT['motion_adapter']}: revision 'main'")
               and "set [draft] motion_adapter_revision = " in m for m in warnings)
    assert any(m.startswith(f"{DRAFT['lora']}: revision 'main'") and "set [draft] lora_revision = " in m
               for m in warnings)
    # The draft is AnimateDiff's: a Wan preset has no draft models to fetch.
    from inference import draft

    assert draft.fetch_sources("wan-vace", draft.Draft()) == ()
    assert [s.role for s in draft.fetch_sources("animatediff-controlnet", draft.Draft(lora=""))] == ["draft_motion_adapter"]
