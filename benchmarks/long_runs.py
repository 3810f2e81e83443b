"""Long and large runs: does memory stay flat? LeNet-5 on all 60,000 MNIST images for 20 epochs
and the small ResNet on all 60,000 Fashion-MNIST images for 5, each through its example script.

Every epoch the scripts record the process's peak resident memory so far (getrusage's
ru_maxrss, `max_rss_mib`) and its resident memory at the epoch's end (`rss_mib`) in
metrics.json's history. This runs the scripts in fresh processes, prints both per epoch as a
Markdown table, and checks that the run is flat: the peak after the last epoch is no more than
--tolerance-mib above the peak after the second (the first epoch allocates what the run reuses).

    python -m fran.data fetch mnist fashion-mnist
    python benchmarks/long_runs.py                      # both, full size (about 15 min quiet)
    python benchmarks/long_runs.py --tiny               # a smoke test: 512 images, 3 and 2 epochs
    python benchmarks/long_runs.py --only lenet5 --json runs/long/results.json

Timings are printed too but are not the point (run it on a quiet machine if they matter).
Exit status 1 if a run failed or was not flat.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RUNS = {  # name: (script, epochs at full size)
    "lenet5": ("lenet5_mnist.py", 20),
    "resnet": ("resnet_fmnist.py", 5),
}


def run_one(name: str, n_train: int, epochs: int, out: Path) -> dict:
    script, _ = RUNS[name]
    cmd = [sys.executable, str(ROOT / "examples" / script), "--n-train", str(n_train),
           "--epochs", str(epochs), "--out", str(out), "--quiet"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        return {"name": name, "ok": False, "error": done.stderr.strip().splitlines()[-1:]}
    metrics = json.loads((out / "metrics.json").read_text())
    history = metrics["history"]
    peaks = [h["max_rss_mib"] for h in history]
    return {
        "name": name,
        "ok": True,
        "n_train": metrics["n_train"],
        "epochs": len(history),
        "max_rss_mib": peaks,
        "rss_mib": [h.get("rss_mib") for h in history],
        "train_seconds": [h["train_seconds"] for h in history],
        "final_test_accuracy": metrics["final"].get("test_accuracy"),
        "growth_after_epoch_2_mib": peaks[-1] - peaks[min(1, len(peaks) - 1)],
    }


def table(result: dict) -> str:
    rows = ["| epoch | peak RSS so far (MiB) | RSS at the epoch's end (MiB) | train s |",
            "|---|---|---|---|"]  # fmt: skip
    for i, (peak, rss, s) in enumerate(
        zip(result["max_rss_mib"], result["rss_mib"], result["train_seconds"], strict=True)
    ):
        rss_text = "-" if rss is None else f"{rss:.1f}"
        rows.append(f"| {i + 1} | {peak:.1f} | {rss_text} | {s:.1f} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--only", choices=sorted(RUNS), action="append", help="run only these")
    p.add_argument("--tiny", action="store_true", help="512 images, 3 and 2 epochs (a smoke test)")
    p.add_argument("--out", type=Path, default=Path("runs/long"), help="where the runs write")
    p.add_argument("--tolerance-mib", type=float, default=16.0, help="allowed peak growth")
    p.add_argument("--json", type=Path, help="also write the results here")
    args = p.parse_args(argv)
    results, ok = [], True
    for name in args.only or sorted(RUNS):
        epochs = RUNS[name][1]
        n_train, epochs = (512, 3 if name == "lenet5" else 2) if args.tiny else (60_000, epochs)
        result = run_one(name, n_train, epochs, args.out / name)
        results.append(result)
        if not result["ok"]:
            print(f"## {name}: FAILED: {result['error']}")
            ok = False
            continue
        flat = result["growth_after_epoch_2_mib"] <= args.tolerance_mib
        ok &= flat
        print(f"## {name}: {result['n_train']:,} images, {result['epochs']} epochs, final test "
              f"accuracy {100 * result['final_test_accuracy']:.2f}%; peak growth after epoch 2: "
              f"{result['growth_after_epoch_2_mib']:.1f} MiB ({'flat' if flat else 'NOT FLAT'})\n")  # fmt: skip
        print(table(result), "\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=1) + "\n")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
