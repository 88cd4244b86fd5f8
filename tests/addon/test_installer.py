"""Backend setup (issue 20 item 3): the installer's commands run for real against a local
folder of wheels (a trivial wheel built here; no network), Cancel keeps the working
environment, and the Doctor run against an environment without torch says so."""
import base64
import hashlib
import subprocess
import zipfile

import pytest

from addon.core import installer
from addon.core.backend import PACKAGE_ROOT, env_python


def _wheel(folder, name="rubble_probe", version="1.0"):
    """A minimal pure-Python wheel (PEP 427): a module, METADATA, WHEEL and a RECORD of hashes."""
    dist = f"{name}-{version}.dist-info"
    files = {f"{name}/__init__.py": "VALUE = 42\n",
             f"{dist}/METADATA": f"Metadata-Version: 2.1\nName: {name.replace('_', '-')}\nVersion: {version}\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: rubble-tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=").decode()
        record.append(f"{path},sha256={digest},{len(text.encode())}")
    files[f"{dist}/RECORD"] = "\n".join(record + [f"{dist}/RECORD,,"]) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as archive:
        for name_in_zip, text in files.items():
            archive.writestr(name_in_zip, text)
    return path


def test_the_plan_installs_the_pinned_requirements_with_the_torch_build_for_the_machine(tmp_path):
    env = tmp_path / "user" / "backend"
    cuda = installer.plan_install(env, "cuda", base_python="/usr/bin/python3.11")
    assert cuda.staging == tmp_path / "user" / "backend.partial" and cuda.needs_network
    assert cuda.commands[0] == ("/usr/bin/python3.11", "-m", "venv", str(cuda.staging))
    pip = cuda.commands[1]
    assert pip[:4] == (str(env_python(cuda.staging)), "-m", "pip", "install")
    shipped = PACKAGE_ROOT / "requirements"
    assert ("-r", str(shipped / "inference.txt")) == pip[pip.index("-r"):pip.index("-r") + 2]
    assert ("-c", str(shipped / "inference.lock.txt")) == pip[pip.index("-c"):pip.index("-c") + 2]
    assert pip[-2:] == ("--extra-index-url", "https://download.pytorch.org/whl/cu130")
    assert installer.plan_install(env, "cpu").commands[1][-1] == "https://download.pytorch.org/whl/cpu"
    assert "--extra-index-url" not in installer.plan_install(env, "mps").commands[1]
    offline = installer.plan_install(env, "cuda", find_links=tmp_path / "wheels")
    assert not offline.needs_network
    assert offline.commands[1][-3:] == ("--no-index", "--find-links", str(tmp_path / "wheels"))
    assert "online access is off" in installer.network_refusal(False, True)
    assert installer.network_refusal(False, False) is None and installer.network_refusal(True, True) is None
    kind, seen = installer.detect_accelerator()
    assert kind in installer.TORCH_INDEX and seen


def test_install_from_local_wheels_cancel_keeps_it_and_doctor_says_torch_is_missing(tmp_path):
    wheels = tmp_path / "wheels"
    _wheel(wheels)
    requirements = tmp_path / "requirements.txt"
    requirements.write_text("rubble-probe\n")
    lock = tmp_path / "lock.txt"
    lock.write_text("rubble-probe==1.0\n")
    env = tmp_path / "user dir" / "backend"  # a space, as in macOS and Windows user folders
    plan = installer.plan_install(env, "cpu", requirements=requirements, constraints=lock, find_links=wheels)

    run = installer.Install(plan, tmp_path / "install.log")
    assert run.wait(timeout=300) == installer.DONE, "\n".join(run.lines)
    assert any("Successfully installed rubble-probe-1.0" in line for line in run.lines), run.lines
    assert (tmp_path / "install.log").read_text().splitlines() == run.lines
    python = env_python(env)
    probe = subprocess.run([str(python), "-c", "import rubble_probe; print(rubble_probe.VALUE)"],
                           capture_output=True, text=True)
    assert probe.stdout.strip() == "42", probe.stderr
    assert not plan.staging.exists()

    # A reinstall cancelled at once: the working environment stays as it was.
    again = installer.Install(plan, tmp_path / "again.log")
    again.cancel()
    assert again.state == installer.CANCELLED and again.lines[-1] == "Cancelled."
    assert not plan.staging.exists()
    assert subprocess.run([str(python), "-c", "import rubble_probe"]).returncode == 0

    # That environment has no torch (nor anything else the backend needs): the Doctor says so.
    doctor = installer.Doctor(python, tmp_path / "doctor.log")
    assert doctor.wait(timeout=120) == installer.FAILED and not doctor.ok
    report = doctor.report()
    assert f"interpreter  {python}" in report
    assert "torch        MISSING" in report and "diffusers    MISSING" in report
    assert f"are not installed in {python}" in report and "Install Backend" in report

