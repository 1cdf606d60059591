"""FlowVAE against its PyTorch twin at the same minutes of training on this
machine: test -log p(x) by importance sampling after a wall-clock budget.

    python benchmarks/flow_vae_equal_budget.py --minutes 20 --num-flows 10

Each repeat trains examples/train_flow_vae.py (`--max-minutes`, the model
and recipe at its defaults plus --train-args) and then the twin
(benchmarks/train_flow_vae_torch.py in ../torchvenv or $TORCH_PYTHON,
torch.compile, the same model, recipe and best-epoch restore), one after the
other in fresh processes, alone; a second repeat runs them in the other
order. Both score all test digits (or --eval-size) with --eval-samples
importance samples. Each run starts from scratch (its folder under
--runs-dir is removed first). Prints a Markdown table; the last line is
JSON with every run's figures.
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
DEFAULT_TORCH_PYTHON = str(ROOT.parent / "torchvenv" / "bin" / "python")


def run_tf(args, output_dir):
  command = [sys.executable, str(ROOT / "examples" / "train_flow_vae.py"),
             "--data-dir", args.data_dir, "--flow", "planar",
             "--num-flows", str(args.num_flows),
             "--epochs", "100000", "--max-minutes", str(args.minutes),
             "--eval-samples", str(args.eval_samples),
             "--eval-size", str(args.eval_size),
             "--output-dir", str(output_dir),
             "--export-dir", str(output_dir / "model")]
  command += args.train_args.split()
  print(" ".join(command), flush=True)
  subprocess.run(command, check=True)
  metrics = json.loads((output_dir / "metrics.json").read_text())
  return {"test_negative_log_likelihood":
          metrics["test_negative_log_likelihood"],
          "test_negative_log_likelihood_stderr":
          metrics["test_negative_log_likelihood_stderr"],
          "test_negative_elbo": metrics["test_negative_elbo"],
          "epochs": len(metrics["history"]["val_elbo"]), "steps": metrics["steps"],
          "best_epoch": (metrics.get("best_epoch") or {}).get("epoch"),
          "train_seconds": metrics["train_seconds_this_run"]}


def run_torch(args, output_dir):
  command = [args.torch_python,
             str(ROOT / "benchmarks" / "train_flow_vae_torch.py"),
             "--minutes", str(args.minutes),
             "--num-flows", str(args.num_flows),
             "--eval-samples", str(args.eval_samples),
             "--eval-size", str(args.eval_size)] + args.torch_args.split()
  print(" ".join(command), flush=True)
  output_dir.mkdir(parents=True)
  with open(output_dir / "log.txt", "w") as log:
    subprocess.run(command, check=True, stdout=log, stderr=subprocess.STDOUT)
  return json.loads((output_dir / "log.txt").read_text().splitlines()[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--minutes", type=float, default=20.)
  parser.add_argument("--num-flows", type=int, default=10)
  parser.add_argument("--eval-samples", type=int, default=1000)
  parser.add_argument("--eval-size", type=int, default=0)
  parser.add_argument("--repeats", type=int, default=1)
  parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"
                                                / "binarized_mnist"))
  parser.add_argument("--runs-dir", type=pathlib.Path,
                      default=ROOT / "runs" / "equal_budget")
  parser.add_argument("--train-args", default="",
                      help="more flags for train_flow_vae.py, one string")
  parser.add_argument("--torch-args", default="",
                      help="more flags for train_flow_vae_torch.py")
  parser.add_argument("--torch-python",
                      default=os.environ.get("TORCH_PYTHON",
                                             DEFAULT_TORCH_PYTHON))
  args = parser.parse_args()
  rows = []
  for repeat in range(args.repeats):
    order = [("tfp_flows", run_tf), ("PyTorch twin", run_torch)]
    for name, run in order if repeat % 2 == 0 else order[::-1]:
      output_dir = args.runs_dir / f"{name.split()[0].lower()}_r{repeat + 1}"
      shutil.rmtree(output_dir, ignore_errors=True)
      result = run(args, output_dir)
      rows.append({"implementation": name, "repeat": repeat + 1, **result})
      print(json.dumps(rows[-1]), flush=True)
  print(f"\n| implementation | repeat | test −log p(x), S = {args.eval_samples}"
        " | test −ELBO | epochs (steps) | best epoch | training time |")
  print("|---|---:|---|---:|---|---:|---:|")
  for row in rows:
    print(f"| {row['implementation']} | {row['repeat']} | "
          f"{row['test_negative_log_likelihood']:.2f} ± "
          f"{row['test_negative_log_likelihood_stderr']:.2f} | "
          f"{row['test_negative_elbo']:.2f} | {row['epochs']} "
          f"({row['steps']:,}) | {row['best_epoch']} | "
          f"{row['train_seconds'] / 60:.1f} min |")
  print(json.dumps(rows))


if __name__ == "__main__":
  main()
