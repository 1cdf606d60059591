"""Training speed of FlowVAE (planar K = 40) in tfp_flows, with and without
XLA, against its PyTorch twin, eager and torch.compile'd, measured side by
side.

    python benchmarks/compare_flow_vae_speed.py
    python benchmarks/compare_flow_vae_speed.py --num-flows 10
    python benchmarks/compare_flow_vae_speed.py --flow none   # diagonal VAE
    python benchmarks/compare_flow_vae_speed.py --repeats 5 --skip-compile
    python benchmarks/compare_flow_vae_speed.py --flow none --steps-per-execution 20
    python benchmarks/compare_flow_vae_speed.py --only tf torch_compile --repeats 5
    TORCH_PYTHON=/other/venv/bin/python \
        python benchmarks/compare_flow_vae_speed.py

Runs bench_flow_vae.py (with this Python) and bench_flow_vae_torch.py
(with --torch-python, a virtual environment holding torch; see that file's
docstring to make one) as subprocesses, interleaved: each repeat runs every
implementation once in turn, so a slow spell of the machine lands on all of
them rather than on one. Each run reports the median of its rounds; the
table gives those per repeat, their median, and its ratio to TF (tfp_flows'
FlowVAE through `model.fit`, compiled with the default `jit_compile`).
Progress goes to stderr; the table and, last, a JSON summary to stdout.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys

HERE = pathlib.Path(__file__).resolve().parent
# Beside the checkout, as bench_flow_vae_torch.py's docstring makes it.
DEFAULT_TORCH_PYTHON = str(HERE.parents[1] / "torchvenv" / "bin" / "python")


def run(name, command):
  """The final JSON line of one benchmark run; exits on a failed run."""
  result = subprocess.run(command, cwd=HERE.parent, capture_output=True,
                          text=True)
  lines = result.stdout.strip().splitlines()
  if result.returncode or not lines or not lines[-1].startswith("{"):
    sys.exit(f"{name} failed (exit {result.returncode}): "
             f"{' '.join(map(str, command))}\n"
             f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
  return json.loads(lines[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--repeats", type=int, default=3)
  parser.add_argument("--steps", type=int, default=300)
  parser.add_argument("--rounds", type=int, default=7)
  parser.add_argument("--num-flows", type=int, default=40)
  parser.add_argument("--flow", choices=("planar", "none"), default="planar",
                      help="planar, or none: the diagonal-Gaussian VAE "
                           "(--num-flows is then ignored)")
  parser.add_argument("--steps-per-execution", type=int, default=1,
                      help="Keras' steps_per_execution for the TF runs (a "
                           "divisor of --steps); the PyTorch loop has no "
                           "such call boundary")
  parser.add_argument("--torch-python",
                      default=os.environ.get("TORCH_PYTHON",
                                             DEFAULT_TORCH_PYTHON),
                      help="Python with torch installed (default: $TORCH_PYTHON"
                           f", else {DEFAULT_TORCH_PYTHON})")
  parser.add_argument("--skip-compile", action="store_true",
                      help="leave out the torch.compile run")
  parser.add_argument("--only", nargs="+", metavar="RUN",
                      choices=("tf", "tf_no_xla", "torch_eager",
                               "torch_compile"),
                      help="run only these (tf is always run: the ratios "
                           "are to it); e.g. --only tf torch_compile gives "
                           "twice the pairs in the same time")
  args = parser.parse_args()
  if not pathlib.Path(args.torch_python).is_file():
    sys.exit(f"no Python at {args.torch_python}; make the PyTorch venv as "
             f"bench_flow_vae_torch.py's docstring says, or pass "
             f"--torch-python / set TORCH_PYTHON.")

  if args.flow == "none":
    args.num_flows = 0
  common = ["--steps", str(args.steps), "--rounds", str(args.rounds),
            "--num-flows", str(args.num_flows)]
  torch_bench = [args.torch_python, HERE / "bench_flow_vae_torch.py"]
  tf_bench = [sys.executable, HERE / "bench_flow_vae.py", "--flow",
              args.flow, "--steps-per-execution",
              str(args.steps_per_execution)] + common
  implementations = {
      "tf": ("TF: tfp_flows FlowVAE, model.fit", tf_bench),
      "tf_no_xla": ("TF: the same, jit_compile=False",
                    tf_bench + ["--jit-compile", "off"]),
      "torch_eager": ("PyTorch eager", torch_bench + common +
                      ["--mode", "eager"]),
  }
  if not args.skip_compile:
    implementations["torch_compile"] = (
        "PyTorch torch.compile", torch_bench + common + ["--mode", "compile"])

  if args.only:
    implementations = {key: value for key, value in implementations.items()
                       if key == "tf" or key in args.only}
  medians = {key: [] for key in implementations}
  torch_version = threads = None
  for repeat in range(1, args.repeats + 1):
    for key, (name, command) in implementations.items():
      print(f"repeat {repeat}/{args.repeats}: {name} ...", end=" ",
            file=sys.stderr, flush=True)
      report = run(name, command)
      medians[key].append(report["img_per_s"])
      torch_version = report.get("torch", torch_version)
      threads = report.get("threads", threads)
      print(f"{report['img_per_s']:,.0f} img/s", file=sys.stderr, flush=True)

  summary = {key: statistics.median(values) for key, values in medians.items()}
  model = (f"planar K={args.num_flows}" if args.num_flows else
           "diagonal (flow none)")
  print(f"\nFlowVAE {model}, batch 100, TF steps_per_execution "
        f"{args.steps_per_execution}, {args.repeats} "
        f"repeats of {args.rounds} rounds x {args.steps} steps; img/s, "
        f"median of rounds per repeat (PyTorch {torch_version}, {threads} "
        f"threads)\n")
  print("| implementation | " + " | ".join(
      f"repeat {i}" for i in range(1, args.repeats + 1)) +
        " | median | vs TF |")
  print("|---|" + "---:|" * (args.repeats + 2))
  for key, (name, _) in implementations.items():
    print(f"| {name} | " + " | ".join(f"{v:,.0f}" for v in medians[key]) +
          f" | {summary[key]:,.0f} | {summary[key] / summary['tf']:.2f}x |")
  print()
  print(json.dumps({
      "img_per_s": summary, "repeats": medians,
      "ratio_to_tf": {key: value / summary["tf"]
                      for key, value in summary.items()},
      "steps": args.steps, "rounds": args.rounds,
      "flow": args.flow, "num_flows": args.num_flows,
      "steps_per_execution": args.steps_per_execution,
      "torch": torch_version,
      "threads": threads}))


if __name__ == "__main__":
  main()
