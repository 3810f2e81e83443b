"""The whole bench under both BLAS settings: the machine's, and OPENBLAS_CORETYPE/L2_SIZE unset.

    python benchmarks/bench_both.py [any bench.py option but --blas-settings]
    python benchmarks/bench.py --blas-settings both [...]          # the same

OpenBLAS reads OPENBLAS_CORETYPE (which kernel to run, e.g. Haswell on a machine whose CPU it would
otherwise run as SkylakeX) and OPENBLAS_L2_SIZE when it is loaded, so the two settings need two
processes: bench.py runs first in a child with the environment as given ("machine setting"), then
in a child with both variables removed ("both unset"). Each child writes its own JSON beside
--out (FILE.machine.json, FILE.unset.json) and prints its table, which names the kernel that
actually ran. Then this prints both tables again and a summary: per item, the target, the ratio
under each setting and whether the target is met in both. --out gets the combined JSON, and the
Markdown (both tables and the summary) goes to the same name with .md.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import bench

SETTINGS = {"machine": "machine setting", "unset": "both unset"}


def strip_option(argv: list[str], name: str) -> list[str]:
    """argv without `name VALUE` / `name=VALUE`."""
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == name:
            skip = True
        elif not arg.startswith(name + "="):
            out.append(arg)
    return out


def option_value(argv: list[str], name: str) -> str | None:
    for i, arg in enumerate(argv):
        if arg == name and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith(name + "="):
            return arg.partition("=")[2]
    return None


def setting_env(setting: str) -> dict[str, str]:
    env = bench.child_env()
    if setting == "unset":
        for var in bench.BLAS_VARS:
            env.pop(var, None)
    return env


def paths(out: Path) -> dict[str, Path]:
    return {s: out.with_name(f"{out.stem}.{s}.json") for s in SETTINGS}


def summary_table(results: dict[str, dict]) -> str:
    """item | target | ratio, machine setting | ratio, both unset | met in both."""
    by_setting = {s: {r["item"]: r for r in res["items"]} for s, res in results.items()}
    keys = [k for k in bench.ITEMS if any(k in items for items in by_setting.values())]
    labels = {s: bench.blas_label(res["machine"]) for s, res in results.items()}
    lines = [
        "| item | target | fran / PyTorch, "
        + " | fran / PyTorch, ".join(f"{SETTINGS[s]} ({labels[s]})" for s in results)
        + " | met in both |",
        "|---|---|" + "---|" * len(results) + "---|",
    ]
    for key in keys:
        records = [by_setting[s].get(key) for s in results]
        ratios = [f"{r['ratio']:.3f}" if r else "–" for r in records]
        both = all(r is not None and r["met"] for r in records)
        label, target = bench.ITEMS[key]
        met = "yes" if both else "**no**"
        lines.append(f"| {label} | ≤ {target} | {' | '.join(ratios)} | {met} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    argv = strip_option(argv, "--blas-settings")
    out = Path(option_value(argv, "--out") or bench.BENCH_DIR / "results.json")
    argv = strip_option(argv, "--out")
    script = str(Path(bench.__file__).resolve())
    results = {}
    for setting, path in paths(out).items():
        print(f"\n==== {SETTINGS[setting]} ====", flush=True)
        subprocess.run(
            [sys.executable, script, *argv, "--out", str(path)],
            env=setting_env(setting),
            cwd=bench.BENCH_DIR,
            check=True,
        )
        results[setting] = json.loads(path.read_text())
    sections = [
        f"### {SETTINGS[s]}: {bench.blas_label(r['machine'])}\n\n{bench.markdown_table(r)}"
        for s, r in results.items()
    ]
    sections.append("### Summary: both BLAS settings\n\n" + summary_table(results))
    text = "\n\n".join(sections)
    print("\n\n" + text)
    bench.write_json({"settings": results, "summary_markdown": text}, out)
    out.with_suffix(".md").write_text(text + "\n")
    print(f"\nwrote {out} and {out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
