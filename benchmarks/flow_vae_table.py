"""The shape of Rezende & Mohamed (2015) Table 2 at this machine's budget.

Trains each configuration with examples/train_flow_vae.py (one process
each, one after another) and prints a Markdown table of test -log p(x)
(importance sampling) and test -ELBO from their metrics.json files.

    python benchmarks/flow_vae_table.py --epochs 50 --eval-samples 1000

Runs that already finished are not retrained (train_flow_vae.py resumes from
its checkpoint and stops at --epochs), so rerunning only redoes evaluation;
--report-only just reads the metrics.json files. Also draws the validation
ELBO of every run per epoch (--curves, default docs/images/flow_vae_curves.png).
"""

import argparse
import json
import pathlib
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = [("none", 0), ("planar", 10), ("radial", 10), ("planar", 40)]


def run_name(flow, num_flows):
  return f"flow_vae_{flow}" + (f"_{num_flows}" if flow != "none" else "")


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=50)
  parser.add_argument("--eval-samples", type=int, default=1000)
  parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"
                                                / "binarized_mnist"))
  parser.add_argument("--runs-dir", type=pathlib.Path,
                      default=ROOT / "runs" / "table")
  parser.add_argument("--report-only", action="store_true")
  parser.add_argument("--curves", type=pathlib.Path,
                      default=ROOT / "docs" / "images" / "flow_vae_curves.png")
  parser.add_argument("--configs", nargs="+", default=None,
                      help="e.g. planar:40 none:0 (default: the four rows)")
  args = parser.parse_args()
  configs = CONFIGS if args.configs is None else [
      (c.split(":")[0], int(c.split(":")[1])) for c in args.configs]
  rows = []
  for flow, num_flows in configs:
    name = run_name(flow, num_flows)
    output_dir = args.runs_dir / name
    command = [sys.executable, str(ROOT / "examples" / "train_flow_vae.py"),
               "--data-dir", args.data_dir, "--flow", flow,
               "--num-flows", str(max(num_flows, 1)),
               "--epochs", str(args.epochs),
               "--eval-samples", str(args.eval_samples),
               "--output-dir", str(output_dir),
               "--export-dir", str(output_dir / "model")]
    if not args.report_only:
      print(" ".join(command), flush=True)
      subprocess.run(command, check=True)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    rows.append((flow, num_flows, metrics))
  print("\n| posterior | K | test −log p(x) (nats) | test −ELBO (nats) | "
        "epochs (steps) | train time |")
  print("|---|---|---|---|---|---|")
  for flow, num_flows, m in rows:
    print(f"| {flow if flow != 'none' else 'diagonal Gaussian'} | "
          f"{num_flows or '–'} | {m['test_negative_log_likelihood']:.2f} ± "
          f"{m['test_negative_log_likelihood_stderr']:.2f} | "
          f"{m['test_negative_elbo']:.2f} | {m['epochs']} ({m['steps']}) | "
          + (f"{m['train_seconds_this_run'] / 60:.1f} min |"
             if m["history"] else "resumed: not in this run |"))
  fig, ax = plt.subplots(figsize=(6, 3.8))
  plotted = [(f, k, m) for f, k, m in rows if m["history"].get("val_elbo")]
  for flow, num_flows, m in plotted:
    curve = m["history"]["val_elbo"]
    label = "diagonal" if flow == "none" else f"{flow} K={num_flows}"
    ax.plot(range(1, len(curve) + 1), [-v for v in curve], label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation −ELBO (nats)")
  ax.set_ylim(top=min(-m["history"]["val_elbo"][min(9, len(
      m["history"]["val_elbo"]) - 1)] for _, _, m in plotted))
  ax.grid(alpha=0.3)
  ax.legend()
  args.curves.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.curves, dpi=120, bbox_inches="tight")
  print(f"\nwrote {args.curves}")
  print(f"\nS = {rows[0][2]['importance_samples']} importance samples per "
        f"digit, {rows[0][2]['importance_digits']} test digits; ± is the "
        "standard error over digits.")


if __name__ == "__main__":
  main()
