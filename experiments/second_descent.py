"""Draw a recorded range-test curve with the rule's current picks: docs/jpeg/lr_range_test_second_descent.png.

    python -m experiments.second_descent            # the record and the picture named below

The record (`range_test_jpeg_10k_100steps.json`: a 100-step range test on 10,000 JPEG copies of
CIFAR-10 training images) keeps the curve and the LRs of the rule that ran with it. The picture
marks what `lr_finder.pick_lrs` picks from that curve with its defaults, and the two minima of the
smoothed loss: the first, which the rule reads, and the global one, which it ignores.
"""
import argparse
import json

import lr_finder

RECORD = "experiments/measurements/range_test_jpeg_10k_100steps.json"
PICTURE = "docs/jpeg/lr_range_test_second_descent.png"
TITLE = "LR range test, 10,000 JPEG copies of CIFAR-10 training images,\n100 steps: a second descent"


def draw(record=RECORD, out=PICTURE, title=TITLE):
    """Redraw the record's curve with pick_lrs' defaults; returns (lr_max, lr_min, rule)."""
    with open(record) as f:
        d = json.load(f)
    lrs, losses, smoothed = d["lrs"], d["losses"], d["smoothed"]
    lr_max, lr_min, rule, note = lr_finder.pick_lrs(lrs, smoothed)
    result = lr_finder.RangeTestResult(lrs, losses, smoothed, lr_max, lr_min, d["stop_reason"], rule, note)
    fig = lr_finder.plot_range_test(result)
    ax = fig.axes[0]
    ax.set_title(title, fontsize=10)
    i = lr_finder.first_minimum(smoothed)
    j = min(range(len(smoothed)), key=smoothed.__getitem__)
    ax.plot([lrs[i], lrs[j]], [smoothed[i], smoothed[j]], "o", color="black", ms=4)
    box = dict(boxstyle="round,pad=0.2", fc="white", ec="none", alpha=0.85)
    arrow = dict(arrowstyle="->", lw=0.7)
    ax.annotate(f"first minimum, LR {lrs[i]:.3g}:\nLRMAX = half of it", xy=(lrs[i], smoothed[i]),
                xytext=(0.06, 2.55), fontsize=8, bbox=box, arrowprops=arrow)
    ax.annotate(f"global minimum,\nLR {lrs[j]:.3g}: ignored", xy=(lrs[j], smoothed[j]),
                xytext=(2.2, 2.45), fontsize=8, bbox=box, arrowprops=arrow)
    fig.tight_layout()
    fig.savefig(out, dpi=120)
    return lr_max, lr_min, rule


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m experiments.second_descent", description=__doc__.split("\n\n")[0])
    p.add_argument("--record", default=RECORD, help=f"a JSON with lrs, losses, smoothed, stop_reason (default: {RECORD})")
    p.add_argument("--out", default=PICTURE, help=f"the PNG to write (default: {PICTURE})")
    args = p.parse_args(argv)
    lr_max, lr_min, rule = draw(args.record, args.out)
    print(f"{args.out}: LRMAX {lr_max:.3g}, LRMIN {lr_min:.3g} ({rule})")


if __name__ == "__main__":
    main()
