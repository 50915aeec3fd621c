"""Sampled heap profiles with Python frames: `tallymalloc run --profile` names the Python
functions that allocated, in shares within 5 points of the truth, and the one that held the
peak; `tallymalloc.profile()` reads the profile in process."""

from conftest import run_script_on_tallymalloc

# Three sites allocate 500, 300 and 200 MiB in blocks of 100,000 bytes, each freed at once,
# the first on the main thread and the others on two threads of their own; then one site holds
# 64 MiB at once, the process's peak. At one sample per 512 KiB the 200 MiB site gets about
# 400 samples (each block is sampled with chance 0.17), so its share's standard deviation is
# under a point: 5 points is over five of them, and the test cannot flake.
SITES = """
import threading

def fifty():
    for _ in range(5243):
        block = bytes(100_000)

def thirty():
    for _ in range(3146):
        block = bytes(100_000)

def twenty():
    for _ in range(2097):
        block = bytes(100_000)

def hold_the_peak():
    held = [bytes(1 << 20) for _ in range(64)]
    return len(held)

fifty()
threads = [threading.Thread(target=thirty), threading.Thread(target=twenty)]
for thread in threads:
    thread.start()
for thread in threads:
    thread.join()
print(hold_the_peak())
"""


def _python_functions(site):
    return [frame["function"] for frame in site["frames"] if frame["kind"] == "python"]


def test_run_profile_names_python_sites_and_the_peak(tmp_path):
    result, document = run_script_on_tallymalloc(tmp_path, SITES, "--profile")
    script = tmp_path / "program.py"
    profile = document["profile"]
    by_function = {}
    for site in profile["sites"]:
        functions = _python_functions(site)
        if functions:
            innermost = functions[0]
            by_function[innermost] = by_function.get(innermost, 0) + site["allocated_bytes"]
            # The Python frames come with their file and line, in the native stack's place.
            python = [f for f in site["frames"] if f["kind"] == "python"]
            if innermost in ("fifty", "thirty", "twenty"):
                assert python[0]["file"] == str(script) and python[0]["line"] > 0, site
                assert site["frames"][0]["kind"] == "native", site
    three = {name: by_function.get(name, 0) for name in ("fifty", "thirty", "twenty")}
    total = sum(three.values())
    assert total > 0, by_function
    for name, truth in (("fifty", 50), ("thirty", 30), ("twenty", 20)):
        share = 100 * three[name] / total
        assert abs(share - truth) <= 5, (name, share, three)
    # The site that held the peak, named with its caller.
    at_peak = max(profile["sites"], key=lambda site: site["peak_bytes"])
    # (Its innermost frame is the list comprehension's: "hold_the_peak.<locals>.<listcomp>"
    # before 3.12, which inlines comprehensions into their function.)
    assert _python_functions(at_peak)[0].startswith("hold_the_peak"), at_peak
    assert at_peak["peak_bytes"] >= 0.8 * profile["peak_bytes"], (at_peak, profile["peak_bytes"])
    # The text report shows the Python functions under each site.
    assert "<- fifty (" in result.stderr, result.stderr


API = """
import sys
import tallymalloc

def allocate_here():
    return [bytes(100_000) for _ in range(200)]

tallymalloc.profile_enable(sample_bytes=64 * 1024)
kept = allocate_here()
sites = tallymalloc.profile()
ours = [s for s in sites if any(f.function.endswith("allocate_here") for f in s.frames)]
assert ours, [[f.function for f in s.frames][:6] for s in sites[:5]]
site = max(ours, key=lambda s: s.allocated_bytes)
frame = next(f for f in site.frames if f.function.endswith("allocate_here"))
assert frame.kind == "python" and frame.file == "<string>" and frame.line == 6, frame
assert isinstance(site, tallymalloc.ProfileSite) and isinstance(frame, tallymalloc.Frame)
# 20 MB allocated there: the estimate is near it, and all of it is live.
assert 10e6 < site.allocated_bytes < 30e6, site
assert site.live_bytes == site.allocated_bytes, site
assert site.frames[0].kind == "native", site.frames[0]
tallymalloc.profile_disable()
for bad, error in ((0, ValueError), (1 << 41, ValueError), ("1", TypeError), (True, TypeError)):
    try:
        tallymalloc.profile_enable(bad)
    except error:
        pass
    else:
        raise AssertionError(f"profile_enable({bad!r}) was accepted")
print("ok")
"""


def test_profile_reads_sites_with_python_frames_in_process(python):
    result = python(API, env={"TALLYMALLOC_PYTHON": "1"})
    assert result.stdout.strip() == "ok"
