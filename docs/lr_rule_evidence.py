"""Evidence for the LR range test's rule: where do its picks land against a grid of trained LRs?

    python docs/lr_rule_evidence.py --width 16 --epochs 4              # synthetic data
    python docs/lr_rule_evidence.py --width 64 --epochs 24 --data-dir ./data --lr-test-iters 97

For one setting it (1) runs the range test exactly as train.main() does and reports the LRMAX
that backoff factors 1, 2, 3, 5 and 10 would pick from the same curve, then (2) trains the full
one-cycle recipe at a grid of LRMAX values (LRMIN = LRMAX / 10) and prints the final test
accuracy of each. A good rule picks inside the plateau of the best LRs, never where training
diverges. Results for this repository are recorded in README.md.
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import lr_finder  # noqa: E402
import train  # noqa: E402


def run(**kw):
    try:
        r = train.main(plots=False, progress=False, **kw)
        return r
    except train.Diverged as e:
        return {"diverged": str(e)}


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--epochs", type=int, default=6)
    p.add_argument("--synthetic-train", type=int, default=10240)
    p.add_argument("--grid", type=str, default="0.025,0.05,0.1,0.2,0.4,0.8,1.6,3.2")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--data-dir", default="", help="CIFAR-10 folder; empty = synthetic data")
    p.add_argument("--lr-test-iters", type=int, default=100, help="as on CIFAR-10 (97 steps per epoch)")
    p.add_argument("--out", type=str, default="/tmp/lr_evidence")
    a = p.parse_args()
    data = dict(data_dir=a.data_dir) if a.data_dir else dict(synthetic=True, synthetic_train=a.synthetic_train)
    common = dict(width=a.width, epochs=a.epochs, seed=a.seed, out_dir=a.out, lr_test_iters=a.lr_test_iters,
                  **data)
    found = run(**common)
    rt = found["lr_range_test"]
    os.makedirs(a.out, exist_ok=True)
    with open(os.path.join(a.out, "range_test.json"), "w") as f:
        json.dump(rt, f)
    lr_finder.plot_range_test(lr_finder.RangeTestResult(**rt), os.path.join(a.out, "range_test.png"))
    picks = {b: lr_finder.pick_lrs(rt["lrs"], rt["smoothed"], backoff=b, stop_reason=rt["stop_reason"])[0]
             for b in (1, 2, 3, 5, 10)}
    rows = [{"lr_max": "found", "value": found["lr_max"], "test_acc": found["test_accuracy"]}]
    for lr in [float(v) for v in a.grid.split(",")]:
        r = run(lr_max=lr, lr_min=lr / 10, **common)
        rows.append({"lr_max": lr, "test_acc": r.get("test_accuracy"), "diverged": "diverged" in r})
        print(json.dumps(rows[-1]), flush=True)
    print(json.dumps({"setting": vars(a), "range_test_steps": len(rt["lrs"]), "stop": rt["stop_reason"],
                      "lr_at_min_smoothed": picks[1], "picks_by_backoff": picks, "grid": rows}, indent=1))


if __name__ == "__main__":
    main()
