"""The shape of Rezende & Mohamed (2015) Table 2 at this machine's budget.

Trains each configuration with examples/train_flow_vae.py (one process
each, one after another) and prints a Markdown table of test -log p(x)
(importance sampling) and test -ELBO from their metrics.json files.

    python benchmarks/flow_vae_table.py --epochs 50 --eval-samples 1000

--check-samples S --check-digits N also scores the first N test digits with
S samples per digit from each run's saved model (e.g. the paper's S = 5000
on a subset, to see how far S = 1000 is from it), in another column.

Each finished row is recorded in --records-dir (default
docs/records/<the runs folder's name>/<run>.json, flow_vae_runs.py): its
flags, test figures and -ELBO per epoch, a few kilobytes to commit. Only the
repository survives from one session to the next on the project's machines,
so a table is built across sessions from its records: a rerun reads a row
from its record when the record's flags are the row's (every flag but the
folders), else from a run folder finished with those flags, and otherwise
trains it, resuming a killed run from its checkpoint (train_flow_vae.py).
--report-only trains nothing and prints the rows recorded so far. Also
draws the validation -ELBO of every row per epoch (--curves, default
docs/images/flow_vae_curves.png).

Curves come from each run's history.csv and training times from its
TensorBoard logs, which every process of a resumed run appends to, so they
cover the whole run; a run's `metrics.json` holds only its last process's
history.
"""

import argparse
import pathlib
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import keras  # noqa: E402

# Run as `python benchmarks/flow_vae_table.py`: its folder is on the path.
import flow_vae_runs  # noqa: E402
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


def finished(run, flags):
  """Whether `run` (flow_vae_runs.load, or None) trained every epoch and was
  scored with `flags`: its metrics exist, it logged `flags["epochs"]`
  epochs (not stopped early by --max-minutes), and every flag but where it
  wrote and its time budget matches, so a record of another recipe, epoch
  count or S is not reused."""
  return (run is not None and run["metrics"] is not None
          and run["flags"] is not None
          and len(run["validation_negative_elbo"]) >= flags["epochs"]
          and flow_vae_runs.experiment(run["flags"])
          == flow_vae_runs.experiment(flags))


def row_source(record, folder_run, flags, report_only=False):
  """Where a table row comes from: "record" (its committed record),
  "folder" (a run folder finished with these flags; recorded then, unless
  `report_only`), "train" (train it, or resume its folder's run), or None
  (`report_only` and nothing finished with these flags: left out)."""
  if finished(record, flags):
    return "record"
  if finished(folder_run, flags):
    return "folder"
  return None if report_only else "train"


def check_log_likelihood(model_path, data_dir, num_samples, num_digits):
  """`-log p(x)` (mean, standard error) of the first `num_digits` test
  digits under the saved model, with `num_samples` importance samples each."""
  model = keras.models.load_model(model_path)
  assert isinstance(model, FlowVAE), model_path
  test = data.load_binarized_mnist(data_dir)["test"][:num_digits]
  log_likelihood = importance_log_likelihood(model, test,
                                             num_samples=num_samples)
  return {"samples": num_samples, "digits": num_digits,
          "mean": float(-log_likelihood.mean()),
          "stderr": float(log_likelihood.std(ddof=1)
                          / len(log_likelihood) ** 0.5)}


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--epochs", type=int, default=50)
  parser.add_argument("--eval-samples", type=int, default=1000)
  parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"
                                                / "binarized_mnist"))
  parser.add_argument("--runs-dir", type=pathlib.Path,
                      default=ROOT / "runs" / "table")
  parser.add_argument("--records-dir", type=pathlib.Path, default=None,
                      help="where each row's record goes (default: "
                           "docs/records/<the --runs-dir folder's name>)")
  parser.add_argument("--report-only", action="store_true",
                      help="train nothing: read the records (else the run "
                           "folders)")
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
  records_dir = args.records_dir or (ROOT / "docs" / "records"
                                     / args.runs_dir.name)
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
    flags = flow_vae_runs.flags_of(command[2:])
    record_path = records_dir / f"{name}.json"
    record = (flow_vae_runs.load(record_path) if record_path.exists()
              else None)
    folder_run = (flow_vae_runs.from_folder(output_dir)
                  if output_dir.is_dir() else None)
    source = row_source(record, folder_run, flags, args.report_only)
    if source is None:
      # A table built across sessions: print the rows done so far.
      print(f"{name}: no record in {records_dir} and no run in {output_dir} "
            "finished with these flags; left out", flush=True)
      continue
    if source == "record":
      run = record
      print(f"{name}: read {record_path}", flush=True)
    else:
      run = folder_run
      if source == "train":
        # train_flow_vae.py resumes a killed run of these flags and refuses
        # a folder holding another run's checkpoint (TrainingRun.keep_flags).
        print(" ".join(command), flush=True)
        subprocess.run(command, check=True)
        run = flow_vae_runs.from_folder(output_dir)
      if not finished(run, flags):
        sys.exit(f"{name}: {output_dir} did not finish with these flags "
                 "(stopped by --max-minutes?); rerun to resume it")
      if args.report_only:
        print(f"{name}: read {output_dir} (not recorded: --report-only)",
              flush=True)
      else:
        flow_vae_runs.write(run, record_path)
        print(f"{name}: recorded {output_dir} in {record_path}", flush=True)
    model_path = output_dir / "model" / "flow_vae.keras"
    check = run.get("check") or {}
    # Only a model this row's folder finished with these flags: the folder
    # of a row read from its record may hold another run by now.
    if (args.check_samples and not args.report_only
        and (check.get("samples"), check.get("digits")) != (
            args.check_samples, args.check_digits)
        and finished(folder_run if source == "record" else run, flags)
        and model_path.is_file()):
      run["check"] = check_log_likelihood(
          model_path, args.data_dir, args.check_samples, args.check_digits)
      flow_vae_runs.write(run, record_path)
    rows.append((flow, num_flows, run))
  if not rows:
    sys.exit("no row has a record or a finished run yet")
  check = (f" first {args.check_digits} digits, S = {args.check_samples} |"
           if args.check_samples else "")
  print("\n| posterior | K | parameters | test −log p(x) (nats) |" + check +
        " test −ELBO (nats) | best epoch | epochs trained | train time |")
  print("|---|---|---:|---|" + "---|" * bool(check) + "---|---|---|---|")
  for flow, num_flows, run in rows:
    m = run["metrics"]
    cell = ""
    if check:
      c = run.get("check") or {}
      cell = (f" {c['mean']:.2f} ± {c['stderr']:.2f} |"
              if (c.get("samples"), c.get("digits")) == (
                  args.check_samples, args.check_digits)
              else " – (no saved model here) |")
    parameters = (f"{run['parameters']:,}" if run["parameters"] is not None
                  else "–")
    print(f"| {flow if flow != 'none' else 'diagonal Gaussian'} | "
          f"{num_flows or '–'} | {parameters} | "
          f"{m['test_negative_log_likelihood']:.2f} ± "
          f"{m['test_negative_log_likelihood_stderr']:.2f} |{cell} "
          f"{m['test_negative_elbo']:.2f} | {(m.get('best_epoch') or {}).get('epoch', '–')} | "
          # The epochs trained, from the curve: metrics["epochs"] is the
          # count asked for, and metrics["steps"] before 2026-12-04 was the
          # kept epoch's step count (training.TrainingRun.finish).
          f"{len(run['validation_negative_elbo'])} | "
          f"{run['train_seconds'] / 60:.1f} min |")
  fig, ax = plt.subplots(figsize=(6, 3.8))
  curves = [(f, k, run["validation_negative_elbo"]) for f, k, run in rows
            if run["validation_negative_elbo"]]
  for flow, num_flows, curve in curves:
    label = "diagonal" if flow == "none" else f"{flow} K={num_flows}"
    ax.plot(range(1, len(curve) + 1), curve, label=label)
  ax.set_xlabel("epoch")
  ax.set_ylabel("validation −ELBO (nats)")
  ax.set_ylim(top=max(curve[min(9, len(curve) - 1)] for _, _, curve in curves))
  ax.grid(alpha=0.3)
  ax.legend()
  args.curves.parent.mkdir(parents=True, exist_ok=True)
  fig.savefig(args.curves, dpi=120, bbox_inches="tight")
  print(f"\nwrote {args.curves}")
  first = rows[0][2]["metrics"]
  print(f"\nS = {first['importance_samples']} importance samples per "
        f"digit, {first['importance_digits']} test digits; ± is the "
        "standard error over digits.")


if __name__ == "__main__":
  main()
