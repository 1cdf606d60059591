"""The shape of Rezende & Mohamed (2015) Table 2 at this machine's budget.

Trains each configuration with examples/train_flow_vae.py (one process
each, one after another) and prints a Markdown table of test -log p(x)
(importance sampling) and test -ELBO from their metrics.json files.

    python benchmarks/flow_vae_table.py --epochs 50 --eval-samples 1000

--check-samples S --check-digits N also scores the first N test digits with
S samples per digit from each run's saved model (e.g. the paper's S = 5000
on a subset, to see how far S = 1000 is from it), in another column.

A rerun skips the runs whose metrics.json already holds --epochs epochs
scored with --eval-samples samples, and resumes a killed run from its
checkpoint (train_flow_vae.py), so a table can be built across sessions;
--report-only just reads the metrics.json files. Also draws the validation
ELBO of every run per epoch (--curves, default docs/images/flow_vae_curves.png).

Curves and training times come from each run's TensorBoard logs, which
every process of a resumed run appends to, so they cover the whole run; a
run's `metrics.json` holds only its last process's history.
"""

import argparse
import json
import pathlib
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfp_flows import data  # noqa: E402
from tfp_flows.evaluation import importance_log_likelihood  # noqa: E402
from tfp_flows.models import FlowVAE  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parents[1]
CONFIGS = [("none", 0), ("planar", 10), ("radial", 10), ("planar", 40)]
# Issue 17's rows: planar up to the paper's K = 80, and each Sylvester Q at
# about planar K = 40's parameter count. The flow head (400 -> K p) holds
# nearly all of a flow's parameters; p per step at D = 40 is 81 (planar),
# 400 (orthogonal, M = 8), 2,000 (Householder, M = D, 8 reflections), 1,680
# (triangular, M = D). The table prints each run's count.
ISSUE_17_CONFIGS = [("none", 0), ("planar", 10), ("planar", 40),
                    ("planar", 80), ("radial", 10),
                    ("sylvester_orthogonal", 8),
                    ("sylvester_householder", 2),
                    ("sylvester_triangular", 2)]


def run_name(flow, num_flows):
  return f"flow_vae_{flow}" + (f"_{num_flows}" if flow != "none" else "")


def _events(path):
  for record in tf.data.TFRecordDataset(str(path)):
    yield tf.compat.v1.Event.FromString(record.numpy())


def logged_curve(output_dir, split="validation", tag="epoch_elbo"):
  """`tag` per epoch of a run's `split` ("train" or "validation"), from its
  TensorBoard logs, over every process that trained it.

  An epoch logged twice (a run killed after logging it but before its
  checkpoint, then resumed) keeps the later value.
  """
  curve = {}
  for path in sorted((output_dir / "logs" / split).glob("events.*")):
    for event in _events(path):
      for value in event.summary.value:
        if value.tag == tag:
          curve[event.step] = float(tf.make_ndarray(value.tensor))
  return [curve[step] for step in sorted(curve)]


def logged_history(output_dir):
  """`(validation ELBO per epoch, training seconds)` of a run, from its
  TensorBoard logs, over every process that trained it.

  The training time sums, per process, the span from its event file's
  creation to its last training event, so the gaps between a kill and a
  resume are not counted.
  """
  seconds = 0.
  for path in sorted((output_dir / "logs" / "train").glob("events.*")):
    created = float(path.name.split(".")[3])
    wall_times = [event.wall_time for event in _events(path)]
    seconds += max(wall_times, default=created) - created
  return logged_curve(output_dir), seconds


def check_log_likelihood(model_path, data_dir, num_samples, num_digits):
  """`log p(x)` of the first `num_digits` test digits under the saved model,
  with `num_samples` importance samples each."""
  model = keras.models.load_model(model_path)
  assert isinstance(model, FlowVAE), model_path
  test = data.load_binarized_mnist(data_dir)["test"][:num_digits]
  return importance_log_likelihood(model, test, num_samples=num_samples)


def finished(output_dir, epochs, eval_samples):
  """Whether the run in `output_dir` trained `epochs` epochs and was scored
  with `eval_samples` importance samples (its metrics.json says so)."""
  path = output_dir / "metrics.json"
  if not path.exists():
    return False
  metrics = json.loads(path.read_text())
  return (metrics["config"]["epochs"] == epochs
          and metrics["importance_samples"] == eval_samples)


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
  parser.add_argument("--check-samples", type=int, default=0,
                      help="S of the extra column (0: none)")
  parser.add_argument("--check-digits", type=int, default=1000,
                      help="test digits the extra column scores")
  parser.add_argument("--annealing-steps", type=int, default=None,
                      help="passed on to train_flow_vae.py (default: its "
                           "default; the paper's is 10000)")
  parser.add_argument("--configs", nargs="+", default=None,
                      help="e.g. planar:40 none:0, or issue17 for its eight "
                           "rows (default: the first table's four)")
  parser.add_argument("--train-args", default="",
                      help="more flags for train_flow_vae.py, one string, "
                           "e.g. '--optimizer adamax --learning-rate 5e-4'")
  args = parser.parse_args()
  if args.configs == ["issue17"]:
    configs = ISSUE_17_CONFIGS
  else:
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
    if args.annealing_steps is not None:
      command += ["--annealing-steps", str(args.annealing_steps)]
    command += args.train_args.split()
    if args.report_only or finished(output_dir, args.epochs,
                                    args.eval_samples):
      print(f"{name}: reading {output_dir / 'metrics.json'}", flush=True)
    else:
      print(" ".join(command), flush=True)
      subprocess.run(command, check=True)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    metrics["val_elbo"], metrics["train_seconds"] = logged_history(output_dir)
    metrics["parameters"] = keras.models.load_model(
        output_dir / "model" / "flow_vae.keras").count_params()
    if args.check_samples:
      metrics["check"] = check_log_likelihood(
          output_dir / "model" / "flow_vae.keras", args.data_dir,
          args.check_samples, args.check_digits)
    rows.append((flow, num_flows, metrics))
  check = (f" first {args.check_digits} digits, S = {args.check_samples} |"
           if args.check_samples else "")
  print("\n| posterior | K | parameters | test −log p(x) (nats) |" + check +
        " test −ELBO (nats) | best epoch | epochs (steps) | train time |")
  print("|---|---|---:|---|" + "---|" * bool(check) + "---|---|---|---|")
  for flow, num_flows, m in rows:
    cell = ""
    if check:
      stderr = m["check"].std(ddof=1) / len(m["check"]) ** 0.5
      cell = f" {-m['check'].mean():.2f} ± {stderr:.2f} |"
    print(f"| {flow if flow != 'none' else 'diagonal Gaussian'} | "
          f"{num_flows or '–'} | {m['parameters']:,} | "
          f"{m['test_negative_log_likelihood']:.2f} ± "
          f"{m['test_negative_log_likelihood_stderr']:.2f} |{cell} "
          f"{m['test_negative_elbo']:.2f} | {(m.get('best_epoch') or {}).get('epoch', '–')} | "
          f"{m['epochs']} ({m['steps']}) | "
          f"{m['train_seconds'] / 60:.1f} min |")
  fig, ax = plt.subplots(figsize=(6, 3.8))
  plotted = [(f, k, m) for f, k, m in rows if m["val_elbo"]]
  for flow, num_flows, m in plotted:
    curve = m["val_elbo"]
    label = "diagonal" if flow == "none" else f"{flow} K={num_flows}"
    ax.plot(range(1, len(curve) + 1), [-v for v in curve], label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation −ELBO (nats)")
  ax.set_ylim(top=min(-m["val_elbo"][min(9, len(m["val_elbo"]) - 1)]
                      for _, _, m in plotted))
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
