"""Regenerate docs/dashboard.png: a short run on a fresh embedded stack, shot by headless Chromium.

    .venv/bin/python docs/screenshot.py [--days 40] [--shoot-at 30] [--out docs/dashboard.png]

(``make screenshot``.) It starts its own broker and PostgreSQL on free ports under a temporary
HOSPITAL_HOME, runs ``hospital-stream worker`` at full speed until ``--days`` are generated,
takes the screenshot once ``--shoot-at`` days are stored (so the pipeline is still moving), then
stops everything it started and removes the temporary folder. ``--keep`` leaves the worker and
the stack running until Ctrl-C, to look at the page in a browser.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
#: what keeps headless Chromium off the network (this machine has none) and quiet
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-quic",
    "--no-first-run",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as response:
        return json.load(response)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--days", type=int, default=40, help="days the worker generates")
    parser.add_argument(
        "--shoot-at", type=int, default=30, help="take the screenshot once this many days are stored"
    )
    parser.add_argument("--beds", default="1200")
    parser.add_argument("--population", default="1800000")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "dashboard.png")
    parser.add_argument("--size", default="1400,1000", help="browser window, width,height")
    parser.add_argument("--keep", action="store_true", help="keep everything running until Ctrl-C")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="hospital-stream-shot-"))
    base.chmod(0o755)  # PostgreSQL runs as an unprivileged user when we are root
    web_port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("HOSPITAL_")}
    env.update(
        {
            "HOSPITAL_HOME": str(base / "home"),
            "HOSPITAL_KAFKA_URL": f"kafka://127.0.0.1:{free_port()}",
            "HOSPITAL_DATABASE_URL": f"postgresql://hospital_worker@127.0.0.1:{free_port()}/hospital",
            "HOSPITAL_WEB_PORT": str(web_port),
            "HOSPITAL_BEDS": args.beds,
            "HOSPITAL_POPULATION": args.population,
            "HOSPITAL_SPEED": "max",
            "HOSPITAL_RUN_UNTIL_DAY": str(args.days),
        }
    )
    cli = str(BIN / "hospital-stream")
    worker = None
    log = base / "worker.log"
    try:
        subprocess.run([cli, "stack", "up"], env=env, check=True, stdout=subprocess.DEVNULL)
        worker = subprocess.Popen(
            [cli, "worker", "--loglevel", "warning"], env=env, stdout=log.open("w"), stderr=subprocess.STDOUT
        )
        url = f"http://127.0.0.1:{web_port}/dashboard/"
        print(f"worker started; dashboard at {url}", flush=True)
        deadline = time.monotonic() + 900
        day = -1
        while day < args.shoot_at - 1:
            if worker.poll() is not None or time.monotonic() > deadline:
                print(log.read_text()[-3000:], file=sys.stderr)
                raise SystemExit(f"the worker stopped or was too slow (last complete day {day})")
            time.sleep(2)
            try:
                day = get_json(f"http://127.0.0.1:{web_port}/dashboard/api/schedule")["sim_day"]
            except (OSError, urllib.error.URLError, KeyError, ValueError):
                continue
        profile = base / "chromium"
        shot = subprocess.run(
            [
                CHROMIUM,
                *CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={args.size}",
                "--virtual-time-budget=8000",
                f"--screenshot={args.out.resolve()}",
                url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if shot.returncode != 0 or not args.out.exists():
            raise SystemExit(f"chromium failed ({shot.returncode}): {shot.stderr[-2000:]}")
        print(f"wrote {args.out} (day {day} stored)")
        if args.keep:
            print("Ctrl-C stops the worker and the stack", flush=True)
            for signum in (signal.SIGINT, signal.SIGTERM):
                signal.signal(signum, signal.default_int_handler)
            try:
                while True:
                    time.sleep(3600)
            except KeyboardInterrupt:
                pass
        return 0
    finally:
        if worker is not None and worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=60)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait()
        subprocess.run([cli, "stack", "down"], env=env, stdout=subprocess.DEVNULL)
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    raise SystemExit(main())
