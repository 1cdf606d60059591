"""A/B speed of two checkouts of tfp_flows: the same benchmark run in fresh
processes, alternating between the trees (ABBA...), so the machine's drift
lands on both. For "did this change slow anything down?".

    git worktree add /tmp/before <commit>
    python benchmarks/ab_trees.py /tmp/before . --repeats 6 -- \\
        benchmarks/bench_glow.py --worker ours
    python benchmarks/ab_trees.py /tmp/before . --repeats 6 -- \\
        benchmarks/bench_flow_vae.py --num-flows 40

`--env-a` / `--env-b NAME=VALUE ...` set environment variables for one side:
with the same tree twice, an A/B of a setting such as TensorFlow's thread
pools or oneDNN:

    python benchmarks/ab_trees.py . . --env-b TF_NUM_INTEROP_THREADS=1 \
        --repeats 6 -- benchmarks/bench_glow.py --worker ours

The benchmark script (a path relative to each tree) runs with this Python,
in the tree, with that tree first on `PYTHONPATH` (so it imports that tree's
`tfp_flows`), and must print a JSON line last with `img_per_s` (and
optionally `peak_rss_mb`). Prints each run, then per tree the median and
range, and the median of the paired ratios B / A; the last line is JSON.
"""

import argparse
import json
import os
import pathlib
import statistics
import subprocess
import sys


def run(tree, command, extra_env=()):
  env = {**os.environ, "PYTHONPATH": str(tree), **dict(extra_env)}
  result = subprocess.run([sys.executable, str(tree / command[0]),
                           *command[1:]], cwd=tree, env=env,
                          capture_output=True, text=True)
  lines = result.stdout.strip().splitlines()
  if result.returncode or not lines or not lines[-1].startswith("{"):
    sys.exit(f"run in {tree} failed (exit {result.returncode}):\n"
             f"{result.stdout[-2000:]}{result.stderr[-3000:]}")
  return json.loads(lines[-1])


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("tree_a", type=pathlib.Path)
  parser.add_argument("tree_b", type=pathlib.Path)
  parser.add_argument("--repeats", type=int, default=6,
                      help="runs per tree")
  for side in "ab":
    parser.add_argument(f"--env-{side}", nargs="+", default=[],
                        metavar="NAME=VALUE",
                        help=f"environment variables for tree {side.upper()}'s "
                             "runs")
  # Everything after `--` is the benchmark and its own flags.
  argv = sys.argv[1:]
  split = argv.index("--") if "--" in argv else len(argv)
  args = parser.parse_args(argv[:split])
  command = argv[split + 1:]
  if not command:
    parser.error("give the benchmark after --: -- script.py [its flags]")
  trees = {"A": args.tree_a.resolve(), "B": args.tree_b.resolve()}
  envs = {}
  for name, settings in (("A", args.env_a), ("B", args.env_b)):
    if any("=" not in setting for setting in settings):
      parser.error(f"--env-{name.lower()} takes NAME=VALUE; got {settings}")
    envs[name] = [setting.split("=", 1) for setting in settings]
  results = {"A": [], "B": []}
  for repeat in range(args.repeats):
    for name in ("AB" if repeat % 2 == 0 else "BA"):
      result = run(trees[name], command, envs[name])
      results[name].append(result)
      print(f"repeat {repeat + 1} {name}: {result['img_per_s']:8.1f} img/s"
            + (f"  {result['peak_rss_mb']:6.0f} MB"
               if "peak_rss_mb" in result else ""), flush=True)
  summary = {"command": command, "repeats": args.repeats}
  for name in "AB":
    rates = [r["img_per_s"] for r in results[name]]
    summary[name] = {"tree": str(trees[name]), "env": dict(envs[name]),
                     "median_img_per_s": statistics.median(rates),
                     "min_img_per_s": min(rates), "max_img_per_s": max(rates)}
    if all("peak_rss_mb" in r for r in results[name]):
      summary[name]["median_peak_rss_mb"] = statistics.median(
          r["peak_rss_mb"] for r in results[name])
    settings = " ".join("=".join(setting) for setting in envs[name])
    print(f"{name} {trees[name]} {settings}: median "
          f"{statistics.median(rates):.1f} img/s "
          f"(range {min(rates):.1f}-{max(rates):.1f})")
  ratios = [b["img_per_s"] / a["img_per_s"]
            for a, b in zip(results["A"], results["B"])]
  summary["ratio_b_over_a"] = statistics.median(ratios)
  summary["ratio_range"] = [min(ratios), max(ratios)]
  print(f"B / A: median {summary['ratio_b_over_a']:.3f} (paired runs, range "
        f"{min(ratios):.3f}-{max(ratios):.3f})")
  print(json.dumps(summary))


if __name__ == "__main__":
  main()
