"""Where a training step's time goes: a TensorFlow profiler trace of a few
`fit` steps, summarized per op type and per op.

    python benchmarks/profile_step.py                  # GlowModel's defaults
    python benchmarks/profile_step.py --model glow-plain   # bench_glow's plain L = 2
    python benchmarks/profile_step.py --model flow-vae     # bench_flow_vae's planar K = 40
    python benchmarks/profile_step.py --model flow-vae --num-flows 10 --jit-compile off
    python benchmarks/profile_step.py --trace-dir runs/profile

The trace (TensorBoard's Profile tab reads it) goes to --trace-dir; the
summary needs xprof's converter (`pip install xprof`; installing it in a
venv of its own keeps TensorFlow's dependencies untouched: pass that venv's
python as --xprof-python), which turns the trace into the framework-op statistics
that TensorBoard's profile plugin shows (checked with xprof 2.24.2). Shares of self time are what this
is for; absolute times drift with the machine (see bench_glow.py for
throughput side by side).

Under XLA (`FlowVAE`'s default) the step's arithmetic is one cluster: the
summary shows it as one op (`_XlaRun`), with what stays outside it (input
checks, noise, the Keras loop) beside it; `--jit-compile off` shows the
same arithmetic op by op, and `--xla-kernels` looks inside the cluster: it
has XLA trace each kernel it runs (`--xla_cpu_enable_xprof_traceme`) and
sums their time per step by kind (dots, fusions, copies, ...), beside the
step's wall time and the XLA executable's (from xprof's trace viewer data).

    python benchmarks/profile_step.py --model flow-vae --num-flows 10 \
        --steps 40 --warmup 40 --xla-kernels --xprof-python ../xprofvenv/bin/python
"""

import argparse
import json
import os
import pathlib
import re
import subprocess
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
HERE = pathlib.Path(__file__).resolve().parent

# Run in xprof's python: the framework op statistics of a trace as rows.
# (A Google DataTable in JSON: the first table's columns and rows.)
_SUMMARIZE = r"""
import json, sys
from xprof.convert import raw_to_tool_data
data, _ = raw_to_tool_data.xspace_to_tool_data(
    sys.argv[1:], "framework_op_stats", {})
table = json.loads(data)[0]
labels = [c["label"] for c in table["cols"]]
print(json.dumps([dict(zip(labels, (c["v"] if c else None for c in r["c"])))
                  for r in table["rows"]]))
"""

# Run in xprof's python: the complete events of a trace, as
# [name, duration in us] pairs.
_EVENTS = r"""
import json, sys
from xprof.convert import raw_to_tool_data
data, _ = raw_to_tool_data.xspace_to_tool_data(sys.argv[1:], "trace_viewer", {})
if isinstance(data, bytes):
  data = data.decode()
print(json.dumps([[e["name"], e.get("dur", 0)]
                  for e in json.loads(data)["traceEvents"] if e.get("ph") == "X"]))
"""
# Events that enclose others (runtime bookkeeping around the kernels), and
# the two whose totals are reported per step.
_ENCLOSING = ("ThreadpoolListener::Region", "ThunkExecutor::Execute",
              "EagerExecute", "ExecutorState::Process", "BlockUntilReady",
              "TFE_Py_ExecuteCancelable", "EagerKernelExecute", "FunctionRun",
              "KernelAndDeviceFunc::Run", "ExecutorState::ProcessAsync::Start",
              "TFE_Py_FastPathExecute_C")
_STEP, _EXECUTABLE = "multi_step_on_iterator", "CpuExecutable::ExecuteAsyncOnStream"


def summarize_xla_kernels(args, path):
  events = json.loads(subprocess.run(
      [args.xprof_python, "-c", _EVENTS, path], check=True,
      capture_output=True, text=True).stdout)
  totals, counts = {}, {}
  for name, duration in events:
    if (name in _ENCLOSING or name.startswith(("EagerLocalExecute", "end: "))
        or "Iterator" in name):
      continue
    if name in (_STEP, _EXECUTABLE):
      kind = name
    elif name.startswith(("MatMul", "dot", "convolution")):
      kind = "dots and convolutions"
    elif "fusion" in name:
      kind = "fusions"
    elif name.startswith("wrapped_"):
      kind = name.split(".")[0]
    else:
      kind = "other: " + name.split(".")[0]
    totals[kind] = totals.get(kind, 0.) + duration
    counts[kind] = counts.get(kind, 0) + 1
  per_step = {k: v / 1e3 / args.steps for k, v in totals.items()}
  print(f"step {per_step.get(_STEP, 0.):.2f} ms, of which the XLA executable "
        f"{per_step.get(_EXECUTABLE, 0.):.2f} ms (profiled, so slower than "
        f"unprofiled steps); kernels by kind, ms a step:")
  kernels = {k: v for k, v in per_step.items() if k not in (_STEP, _EXECUTABLE)}
  for kind, ms in sorted(kernels.items(), key=lambda kv: -kv[1])[:args.top]:
    print(f"{ms:8.2f} ms  {counts[kind] // args.steps:6d} a step  {kind}")
  print(json.dumps({"ms_per_step": per_step}))


def trace(args):
  import keras
  import tensorflow as tf

  sys.path.insert(0, str(HERE))
  import bench_flow_vae
  import bench_glow
  from tfp_flows import data
  from tfp_flows.models import PLAIN_GLOW, FlowVAE, GlowModel

  jit_compile = {"auto": "auto", "on": True, "off": False}[args.jit_compile]
  if args.model == "flow-vae":
    batch_size = args.batch_size or 100
    images = bench_flow_vae.load_images(batch_size * 50)
    keras.utils.set_random_seed(0)
    model = FlowVAE(latent_dim=40, flow=args.flow, num_flows=args.num_flows,
                    hidden_units=(400, 400))
    model.compile(optimizer=keras.optimizers.Adam(1e-3),
                  jit_compile=jit_compile)
  else:
    batch_size = args.batch_size or 64
    images = bench_glow._images(batch_size * 50)
    if args.model == "glow-plain":
      model = GlowModel(image_shape=(28, 28, 1), num_levels=2, **PLAIN_GLOW)
      model.compile(optimizer=keras.optimizers.Adam(1e-3),
                    jit_compile=jit_compile)
    else:
      model = GlowModel(image_shape=(28, 28, 1))
      model.compile(jit_compile=jit_compile)
  dataset = data.image_dataset(images, batch_size, shuffle=True,
                               repeat=True)
  model.fit(dataset, steps_per_epoch=args.warmup, epochs=1, verbose=0)

  class Profile(keras.callbacks.Callback):
    def on_train_begin(self, logs=None):
      tf.profiler.experimental.start(str(args.trace_dir))

    def on_train_end(self, logs=None):
      tf.profiler.experimental.stop()

  model.fit(dataset, steps_per_epoch=args.steps, epochs=1, verbose=0,
            callbacks=[Profile()])


def _latest_trace(args):
  paths = sorted(str(p) for p in args.trace_dir.rglob("*.xplane.pb"))
  if not paths:
    sys.exit(f"no *.xplane.pb under {args.trace_dir}")
  return paths[-1]


# A coupling network's convolution layers in the op names of a trace: Keras'
# automatic layer names `conv2d_<n>` (plus a scope suffix `_<s>`) count
# across the model, three a coupling, so layer n of coupling `a` is at
# position n - 3a in its network (conv3x3, conv1x1, conv3x3). Checked
# against traces of GlowModel at 47b20c7 (Keras 3.15); since 188b2d8 the
# hidden 1x1 is a matmul in a `pointwise_conv` scope.
_COUPLING_CONV = re.compile(
    r"affine_coupling(?:_(\d+))?/.*?conv2d(?:_(\d+))?_\d+/")


def glow_convolutions(rows, steps):
  """Glow's convolution work, ms a step: {(which, kind): ms}, `which` the
  couplings' hidden 1x1, their last 3x3 computed as matmuls
  (`glow._conv_as_matmuls`, its padding, slicing and sums included), or the
  other 3x3 convolutions (couplings and split priors), `kind` forward,
  filter gradient, input gradient, or gradients (a matmul's two, not told
  apart); everything else under ("other", "")."""
  table = {}
  for r in rows:
    op_type, name = r["Operation Type"], r["Operation Name"]
    if op_type == "IDLE":
      continue
    if "pointwise_conv" in name:
      which = "hidden 1x1"
    elif "conv_as_matmuls" in name:
      which = "last 3x3 as matmuls"
    elif "Conv2D" in op_type:
      match = _COUPLING_CONV.search(name)
      position = (int(match.group(2) or 0) - 3 * int(match.group(1) or 0)
                  if match else None)
      which = "hidden 1x1" if position == 1 else "3x3"
    else:
      which = "other"
    if which == "other":
      kind = ""
    elif "BackpropFilter" in op_type:
      kind = "filter gradient"
    elif "BackpropInput" in op_type:
      kind = "input gradient"
    elif "Conv2D" in op_type or "gradient_tape" not in name:
      kind = "forward"
    else:
      kind = "gradients"
    table[which, kind] = (table.get((which, kind), 0.) +
                          float(r["Total self-time (us)"]) / 1e3 / steps)
  return table


def summarize(args):
  rows = json.loads(subprocess.run(
      [args.xprof_python, "-c", _SUMMARIZE, _latest_trace(args)], check=True,
      capture_output=True, text=True).stdout)
  rows = [r for r in rows if r.get("Host/device") == "Host"]
  time_key = "Total self-time (us)"
  total = sum(float(r[time_key]) for r in rows)
  by_type = {}
  for r in rows:
    by_type[r["Operation Type"]] = by_type.get(r["Operation Type"], 0.) + float(r[time_key])
  print(f"total self time {total / 1e6 / args.steps:.3f} s a step over "
        f"{len(rows)} ops")
  for op_type, t in sorted(by_type.items(), key=lambda kv: -kv[1])[:25]:
    print(f"{100 * t / total:6.1f}%  {op_type}")
  print("top ops:")
  for r in sorted(rows, key=lambda r: -float(r[time_key]))[:args.top]:
    print(f"{100 * float(r[time_key]) / total:6.1f}%  "
          f"{int(float(r['#Occurrences'])):6d}x  {r['Operation Type']:24s} "
          f"{r['Operation Name'][-120:]}")
  if args.model in ("glow", "glow-plain"):
    table = glow_convolutions(rows, args.steps)
    busy = sum(table.values())
    print("Glow's convolutions, ms of self time a step (busy: all ops but "
          f"IDLE, {busy:.1f} ms):")
    for (which, kind), ms in sorted(table.items()):
      print(f"  {which:19s} {kind:16s} {ms:7.1f} ms {100 * ms / busy:5.1f}%")
  print(json.dumps({"self_seconds_per_step": total / 1e6 / args.steps,
                    "by_type": {k: v / total for k, v in by_type.items()}}))


def main():
  parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
  parser.add_argument("--model", choices=("glow", "glow-plain", "flow-vae"),
                      default="glow",
                      help="GlowModel's defaults, bench_glow's plain L = 2 "
                           "Glow, or bench_flow_vae's FlowVAE")
  parser.add_argument("--plain", action="store_const", const="glow-plain",
                      dest="model", help="the same as --model glow-plain")
  parser.add_argument("--flow", default="planar",
                      help="FlowVAE's flow family, or none")
  parser.add_argument("--num-flows", type=int, default=40)
  parser.add_argument("--jit-compile", choices=("auto", "on", "off"),
                      default="auto", help="the model's compile(jit_compile)")
  parser.add_argument("--batch-size", type=int,
                      help="default: 64 for Glow, 100 for FlowVAE")
  parser.add_argument("--warmup", type=int, default=10)
  parser.add_argument("--steps", type=int, default=10)
  parser.add_argument("--top", type=int, default=40)
  parser.add_argument("--trace-dir", type=pathlib.Path,
                      default=pathlib.Path("runs/profile_step"))
  parser.add_argument("--xprof-python", default="python",
                      help="a python that has xprof installed")
  parser.add_argument("--summarize-only", action="store_true")
  parser.add_argument("--xla-kernels", action="store_true",
                      help="time the kernels inside XLA clusters instead")
  args = parser.parse_args()
  if args.xla_kernels:
    # Read when XLA first compiles, so before tracing starts.
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") +
                               " --xla_cpu_enable_xprof_traceme=true")
  if not args.summarize_only:
    trace(args)
  if args.xla_kernels:
    summarize_xla_kernels(args, _latest_trace(args))
  else:
    summarize(args)


if __name__ == "__main__":
  main()
