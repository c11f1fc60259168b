"""The web app's costs on this machine: its start-up time and memory, and the time of one request.

    python -m app.bench SPACE --json experiments/measurements/app_bench_cpu.json
    python -m app.bench SPACE --screenshot docs/app.png      # and a picture of the page in use

SPACE is a folder written by `python -m app.export`. Start-up: from launching `python app.py` there
to the first answer of its page on 127.0.0.1, the median of --starts, and the server process's
resident memory then (Linux: /proc/<pid>/status). One request: the top 3 classes and one Grad-CAM image (layer2, the default) for
an example image, through the page's HTTP API with gradio_client, warmed up once, then the median of
--requests; and the same answer computed in this process (the model's share of it). The peak memory
of the server is read after the requests. The screenshot uploads the cat example, classifies it
and opens the gallery, in headless Chromium.
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request

import torch

import utils
from app.app import read_about
from utils import UsageError


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def memory_mib(pid):
    """(resident now, peak resident) of a process in MiB, from /proc (Linux); (None, None) elsewhere."""
    try:
        with open(f"/proc/{pid}/status") as f:
            fields = dict(line.split(":", 1) for line in f if ":" in line)
        return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024
    except (OSError, KeyError, ValueError):
        return None, None


def start(space, port, timeout=300):
    """(server process, seconds from launch to the page's first answer)."""
    env = {**os.environ, "GRADIO_SERVER_PORT": str(port), "GRADIO_ANALYTICS_ENABLED": "False"}
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "app.py"], cwd=space, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while time.perf_counter() - t0 < timeout:
        if proc.poll() is not None:
            raise SystemExit(f"error: the app in {space} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as r:
                if r.status == 200:
                    return proc, time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit(f"error: the app did not answer within {timeout} s")


def request_seconds(port, example, n):
    """Seconds of `n` requests (top 3, one Grad-CAM at layer2) through the page's API, after one."""
    from gradio_client import Client, handle_file
    client = Client(f"http://127.0.0.1:{port}/", verbose=False)
    args = dict(image=handle_file(example), top_k=3, show_gradcam=True, gradcam_count=1, layer="layer2", opacity=0.5)
    client.predict(**args, api_name="/classify")                         # warm-up
    seconds = []
    for _ in range(n):
        t = time.perf_counter()
        client.predict(**args, api_name="/classify")
        seconds.append(time.perf_counter() - t)
    return seconds


IN_PROCESS = """
import json, sys, time
from PIL import Image
import app
space, image = app.Space(), Image.open(sys.argv[1])
app.classify(space, image, 3, True, 1, "layer2", 0.5)
seconds = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    app.classify(space, image, 3, True, 1, "layer2", 0.5)
    seconds.append(time.perf_counter() - t)
print(json.dumps(seconds))
"""


def in_process_seconds(space, example, n):
    """Seconds of `n` answers computed by the Space's own app.py in a process of its own (its
    modules, not this checkout's), after one."""
    out = subprocess.run([sys.executable, "-c", IN_PROCESS, os.path.abspath(example), str(n)], cwd=space,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def screenshot(port, space, path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1400,1750", "--hide-scrollbars"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        browser.get(f"http://127.0.0.1:{port}/")
        time.sleep(4)
        browser.find_element(By.CSS_SELECTOR, "#upload input[type=file]").send_keys(
            os.path.abspath(os.path.join(space, "examples", "3_cat.png")))
        time.sleep(2)
        browser.find_element(By.CSS_SELECTOR, "#classify").click()
        time.sleep(4)
        browser.find_element(By.CSS_SELECTOR, "#show-wrong input[type=checkbox]").click()
        time.sleep(5)
        picture = browser.get_screenshot_as_png()
        utils.atomic_write(path, lambda tmp: open(tmp, "wb").write(picture))      # whole or not at all
    finally:
        browser.quit()


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m app.bench", description=__doc__.split("\n\n")[0])
    p.add_argument("space", help="a Space folder written by python -m app.export")
    p.add_argument("--requests", type=int, default=10, help="timed requests (after one to warm up)")
    p.add_argument("--starts", type=int, default=3, help="start-ups timed (the median kept; the requests go to the last)")
    p.add_argument("--json", default="", help="write the record here")
    p.add_argument("--screenshot", default="", help="save a PNG of the page in use here")
    a = p.parse_args(argv)
    try:                                                # the Space read first, not after minutes of timing
        about = read_about(os.path.join(a.space, "space.json"), "export the Space again: python -m app.export RUN SPACE")
    except UsageError as e:
        raise SystemExit(f"error: {e}") from None
    example = os.path.join(a.space, "examples", "3_cat.png")
    startups = []
    for _ in range(a.starts - 1):                       # the start-up varies: time it more than once
        port = free_port()
        proc, seconds = start(a.space, port)
        startups.append(seconds)
        proc.terminate()
        proc.wait(timeout=30)
    port = free_port()
    proc, seconds = start(a.space, port)
    startups.append(seconds)
    startup = statistics.median(startups)
    try:
        rss_started, _ = memory_mib(proc.pid)
        http = request_seconds(port, example, a.requests)
        rss_after, peak = memory_mib(proc.pid)
        if a.screenshot:
            screenshot(port, a.space, a.screenshot)
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    local = in_process_seconds(a.space, example, a.requests)
    record = {"command": "python -m app.bench " + " ".join(sys.argv[1:] if argv is None else argv),
              "date": time.strftime("%Y-%m-%d"), "machine": utils.cpu_name(), "cpu_threads": torch.get_num_threads(),
              "torch": torch.__version__, "model_width": about.get("width"), "startup_seconds": startup,
              "startup_seconds_all": startups,
              "memory_mib": {"after_start": rss_started, "after_requests": rss_after, "peak": peak},
              "request_seconds": {"http_median": statistics.median(http), "http_min": min(http), "http_all": http,
                                  "in_process_median": statistics.median(local), "in_process_all": local},
              "request": "top 3 classes and one Grad-CAM image at layer2, for examples/3_cat.png"}
    print(f"start-up {startup:.1f} s, memory {rss_started:.0f} MiB after start, {peak:.0f} MiB peak; one request "
          f"(top 3 + Grad-CAM) {1000 * statistics.median(http):.0f} ms through HTTP, "
          f"{1000 * statistics.median(local):.0f} ms in process; width {about.get('width')}, {utils.cpu_name()}")
    if a.json:
        utils.atomic_write_json(record, a.json)
    return record


if __name__ == "__main__":
    main()
