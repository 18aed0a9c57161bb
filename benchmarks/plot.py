"""The growth section's figure: `python benchmarks/plot.py OUT.png < runs.json`.

benchmarks.report runs it with `.venv-bench-dbos`'s python (matplotlib is pinned there by
scripts/bench.sh, so the worker's environment never gets it); it imports nothing from the project.
Input on stdin: {"title": str, "runs": [{"label", "subject", "n", "curve", "produced", "fifths"}]}
(growth.py's figures of one run each, `label` to show). Left: records completed over the seconds
since the start of producing, one line per subject and size, the paced producer's requests dashed;
right: each run's completion rate by fifth of its records (flat = no slow-down as the run grows).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import matplotlib as mpl

mpl.use("Agg")
import matplotlib.pyplot as plt  # after the backend is chosen
from matplotlib.ticker import FuncFormatter

COLORS = {"worker": "#1f77b4", "dbos": "#ff7f0e"}
STYLES = ["-", "--", ":", "-."]  # by size: the largest solid


def thousands(x: float, _pos: int) -> str:
    return f"{x:,.0f}"


def draw(data: dict[str, Any], out: str) -> None:
    runs = data["runs"]
    sizes = sorted({r["n"] for r in runs})
    style = {n: STYLES[min(len(sizes) - 1 - k, len(STYLES) - 1)] for k, n in enumerate(sizes)}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 5.2), gridspec_kw={"width_ratios": [3, 2]})
    for n in sizes:  # the requests: one paced producer per run, alike for every subject of a size
        produced = next((r["produced"] for r in runs if r["n"] == n and r.get("produced")), None)
        if produced:
            xs, ys = zip(*produced, strict=True)
            left.plot(xs, ys, color="0.6", linestyle=(0, (1, 3)), linewidth=1)
    for r in runs:
        color = COLORS.get(r["subject"], "0.3")
        xs, ys = zip(*r["curve"], strict=True)
        left.plot(xs, ys, color=color, linestyle=style[r["n"]], linewidth=1.6, label=r["label"])
        right.plot(
            range(1, 6), r["fifths"], color=color, linestyle=style[r["n"]], marker="o", label=r["label"]
        )
    left.plot([], [], color="0.6", linestyle=(0, (1, 3)), label="requests produced")
    left.set_xlabel("seconds since the start of producing")
    left.set_ylabel("records completed")
    left.set_title("completions over time")
    left.yaxis.set_major_formatter(FuncFormatter(thousands))
    left.set_xlim(left=0)
    left.set_ylim(0, max(sizes) * 1.03)
    left.legend(fontsize=8, loc="lower right")
    left.grid(alpha=0.3)
    right.set_xticks(range(1, 6), ["1st", "2nd", "3rd", "4th", "5th"])
    right.set_xlabel("fifth of the run's records, by completion time")
    right.set_ylabel("records/s")
    right.set_title("completion rate by fifth")
    right.set_ylim(0, max(max(r["fifths"]) for r in runs) * 1.15)
    right.yaxis.set_major_formatter(FuncFormatter(thousands))
    right.legend(fontsize=8, loc="lower right")
    right.grid(alpha=0.3)
    fig.suptitle(data.get("title", ""), fontsize=10)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    draw(json.load(sys.stdin), sys.argv[1])


if __name__ == "__main__":
    main()
