"""Stamps under concurrent writers: farm chunks record their frames at the same time, in
separate processes, and none may lose another's stamps."""
import json
import subprocess
import sys
import threading

from addon.core.files import write_json_atomic
from addon.core.stamps import Stamps
from conftest import REPO

# One farm chunk's bookkeeping: its own Stamps (as each process has), one record per frame.
CHUNK = """
import sys
from addon.core.stamps import Stamps
shot, first, last = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
for frame in range(first, last + 1):
    Stamps(shot).record("passes", "key-a", item=str(frame))
"""


def test_parallel_processes_keep_every_frames_stamp(tmp_path):
    chunks = [(1 + 50 * i, 50 * (i + 1)) for i in range(6)]
    procs = [subprocess.Popen([sys.executable, "-c", CHUNK, str(tmp_path), str(a), str(b)], cwd=REPO,
                              stderr=subprocess.PIPE, text=True) for a, b in chunks]
    errors = [p.communicate()[1] for p in procs]
    assert all(p.returncode == 0 for p in procs), errors
    stamps = Stamps(tmp_path)
    lost = [f for f in range(1, 301) if stamps.key("passes", item=str(f)) != "key-a"]
    assert not lost, f"{len(lost)} frames lost their stamps (first: {lost[0]})"
    leftovers = [p.name for p in tmp_path.rglob("*") if p.name.endswith(".tmp")]
    assert not leftovers, leftovers


def test_threads_recording_at_once_through_one_stamps_object(tmp_path):
    stamps = Stamps(tmp_path)
    failures = []

    def record(worker):
        try:
            for frame in range(worker * 40, worker * 40 + 40):
                stamps.record("passes", f"key-{frame}", item=str(frame))
        except Exception as exc:  # collected: an exception in a thread would not fail the test
            failures.append(repr(exc))

    threads = [threading.Thread(target=record, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert all(Stamps(tmp_path).key("passes", item=str(f)) == f"key-{f}" for f in range(320))


def test_a_stamp_is_read_fresh_so_another_process_record_counts(tmp_path):
    mine, other = Stamps(tmp_path), Stamps(tmp_path)
    (tmp_path / "out").write_text("x")
    assert not mine.is_fresh("generate", "k1", [tmp_path / "out"])
    other.record("generate", "k1")
    assert mine.is_fresh("generate", "k1", [tmp_path / "out"])
    assert not mine.is_fresh("generate", "k2", [tmp_path / "out"]), "another key is stale"
    assert not mine.is_fresh("generate", "k1", [tmp_path / "missing"]), "a missing output is stale"


def test_json_written_by_many_threads_at_once_is_always_whole(tmp_path):
    path = tmp_path / "shot.json"
    failures = []

    def write(worker):
        try:
            for i in range(50):
                write_json_atomic(path, {"worker": worker, "i": i, "pad": "x" * 2000})
        except Exception as exc:
            failures.append(repr(exc))

    threads = [threading.Thread(target=write, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures[:3]
    assert json.loads(path.read_text())["i"] == 49
    assert [p.name for p in tmp_path.iterdir()] == ["shot.json"], "temporary files were left behind"
