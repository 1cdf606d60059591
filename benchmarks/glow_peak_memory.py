"""Peak resident memory of GlowModel training, stage by stage, with the
options that cost memory switched off one at a time: where bench_glow.py's
peak RSS comes from.

    python benchmarks/glow_peak_memory.py                  # the defaults
    python benchmarks/glow_peak_memory.py --tf-conv        # Keras' own last conv
    python benchmarks/glow_peak_memory.py --top-mixture-components 0

Trains GlowModel at its defaults (bench_glow.py's `--ours defaults`: the
same images, batch 64, its default recipe) for --steps steps in this
process and prints, after the imports, after building, and after steps 1,
3 and --steps, the process's peak (`VmHWM`) and current (`VmRSS`) resident
memory in MB from /proc/self/status (Linux). `--tf-conv` computes the
couplings' last convolution by calling the Keras layer instead of
`glow._conv_as_matmuls`. One process is one measurement: run each variant
a few times, alternating, and compare medians (the peaks differ by
about 20 MB between runs of the same variant).
"""

import argparse
import json
import os
import pathlib
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))


def memory_mb():
  values = {}
  with open("/proc/self/status") as status:
    for line in status:
      if line.startswith(("VmHWM", "VmRSS")):
        key, value = line.split(":")
        values[key] = int(value.split()[0]) // 1024
  return values


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=30)
  parser.add_argument("--tf-conv", action="store_true")
  parser.add_argument("--top-mixture-components", type=int, default=None)
  parser.add_argument("--no-learned-prior", action="store_true")
  parser.add_argument("--preprocessing", default=None,
                      help="GlowModel's preprocessing (default: its own)")
  args = parser.parse_args()

  stages = {}
  import keras
  from bench_glow import _images
  from tfp_flows import data
  from tfp_flows.layers import glow as glow_layers
  from tfp_flows.models import GlowModel
  stages["import"] = memory_mb()
  if args.tf_conv:
    glow_layers._conv_as_matmuls = lambda layer, inputs: layer(inputs)
  options = {}
  if args.top_mixture_components is not None:
    options["top_mixture_components"] = args.top_mixture_components
  if args.no_learned_prior:
    options["learned_prior"] = False
  if args.preprocessing is not None:
    options["preprocessing"] = args.preprocessing
  model = GlowModel(image_shape=(28, 28, 1), **options)
  model.compile()
  stages["build"] = memory_mb()

  class Probe(keras.callbacks.Callback):
    def on_train_batch_end(self, batch, logs=None):
      float(logs["loss"])  # wait for the step
      if batch + 1 in (1, 3, args.steps):
        stages[f"step {batch + 1}"] = memory_mb()

  images = _images(64 * 50)
  model.fit(data.image_dataset(images, 64, shuffle=True, repeat=True),
            steps_per_epoch=args.steps, epochs=1, verbose=0,
            callbacks=[Probe()])
  for stage, values in stages.items():
    print(f"{stage:>8}: peak {values['VmHWM']:,} MB, now {values['VmRSS']:,} MB")
  print(json.dumps({"options": vars(args), "stages": stages,
                    "peak_rss_mb": stages[f"step {args.steps}"]["VmHWM"]}))


if __name__ == "__main__":
  main()
