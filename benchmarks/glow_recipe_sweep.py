"""Glow's training recipe, chosen by measurement: each option at a fixed
budget of training steps, every run in a fresh process.

Data: the 8,000 digits of ../shared/data/mnist split 6,000 / 1,000 / 1,000
(seed 0), batch 64, L = 2, K = 8, width 64, unless a run sets its own
(`num_levels`; `image_size` 32 zero-pads the digits, `top_mixture` adds a
top mixture: GlowModel's options). Per run: bits/dim on the 1,000
validation digits (with the moving-average weights when the run keeps them,
as `fit` leaves them; for a conditional model given the labels, and
marginalized over them), and the sample-quality scores of 1,000 samples at
T = 0.7 and 1.0 (`sample_quality.py`: confident share, class entropy,
Frechet distance; label accuracy for the conditional model). A sample grid
per run goes to --out-dir. Runs already in --out-dir/results.jsonl are not
rerun, so a killed sweep resumes.

    python benchmarks/glow_recipe_sweep.py --steps 2000 --runs plain full
    python benchmarks/glow_recipe_sweep.py --steps 2000 --seed 1 --runs full
    python benchmarks/glow_recipe_sweep.py --out-dir runs/sweep5000 --plot-curves curves.png

--plot-curves draws the training curves (bits/dim per 100 steps) of every
run in --out-dir/results.jsonl, with each run's validation figure marked at
its last step, and trains nothing. --plot-quality draws, for every run in
the results files named, the confident share of its T = 0.7 samples
against its validation bits/dim, labelled with the run's steps:

    python benchmarks/glow_recipe_sweep.py --plot-quality quality.png \
        --results runs/glow_recipe_sweep/results.jsonl runs/sweep5000/results.jsonl

Wall-clock seconds are recorded but are not a speed measurement (runs may
share the machine); per-step cost is `bench_glow.py`'s.
"""

import argparse
import json
import os
import pathlib
import subprocess
import sys
import time

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

HERE = pathlib.Path(__file__).resolve().parent

#: Today's plain Glow: standard normal latents, Glorot networks, constant
#: Adam(1e-3), no moving average, unshifted digits.
PLAIN = {"learned_prior": False, "coupling": "affine",
         "hidden_initializer": "glorot_uniform", "warmup_steps": 0,
         "ema_momentum": None, "max_shift": 0, "learning_rate": 1e-3,
         "cosine_decay": False, "num_classes": None,
         "classification_weight": 0., "preprocessing": "centre",
         "hidden_channels": 64, "num_steps": 8, "conditional_flow": False}
#: Every option the issue names, on. (A first sweep with a 0.999 moving
#: average scored 5.6 validation bits/dim at 2,000 steps where the training
#: loss was 2.7: averaged over ~1,000 steps of a fast-changing model, the
#: weights are not those of a good model. Keras' moving average has no
#: warm-up of its momentum, so the time constant must suit the budget.)
FULL = {**PLAIN, "learned_prior": True, "hidden_initializer": "he_normal",
        "warmup_steps": 200, "ema_momentum": 0.99, "max_shift": 2}
#: The three-level runs' common options: learned priors, the logit, Adam(2e-3)
#: after a 200-step warm-up, digits zero-padded to 32 x 32 for L = 3
#: (openai/glow's MNIST setting); and the conditional model's on top, with
#: openai/glow's weight_y on the padded D.
PAD32 = {**PLAIN, "learned_prior": True, "preprocessing": "logit",
         "warmup_steps": 200, "learning_rate": 2e-3, "image_size": 32,
         "num_levels": 3}
CONDITIONAL_PAD32 = {**PAD32, "num_classes": 10,
                     "classification_weight": 0.01 * 32 * 32}
RUNS = {
    "plain": PLAIN,
    "full": FULL,
    # Leave one out of `full`.
    "full-no_prior": {**FULL, "learned_prior": False},
    "full-glorot": {**FULL, "hidden_initializer": "glorot_uniform"},
    "full-no_warmup": {**FULL, "warmup_steps": 0},
    "full-no_ema": {**FULL, "ema_momentum": None},
    "full-no_shift": {**FULL, "max_shift": 0},
    # Variations.
    "full+additive": {**FULL, "coupling": "additive"},
    "full+ema0.995": {**FULL, "ema_momentum": 0.995},
    "full+ema0.999": {**FULL, "ema_momentum": 0.999},
    "full+cosine": {**FULL, "cosine_decay": True},
    "full+shift1": {**FULL, "max_shift": 1},
    "full+lr2e-3": {**FULL, "learning_rate": 2e-3},
    "full-no_shift+cosine": {**FULL, "max_shift": 0, "cosine_decay": True},
    "prior_only": {**PLAIN, "learned_prior": True},
    "prior+logit": {**PLAIN, "learned_prior": True, "preprocessing": "logit"},
    "prior+logit+recipe": {**PLAIN, "learned_prior": True,
                           "preprocessing": "logit", "warmup_steps": 200,
                           "ema_momentum": 0.99},
    # Warm-up then a cosine decay of the learning rate to zero at the last
    # step: at a fixed budget, the end of the run at small steps.
    "prior+logit+cosine": {**PLAIN, "learned_prior": True,
                           "preprocessing": "logit", "warmup_steps": 200,
                           "cosine_decay": True},
    # `compile()`'s default since the cosine run: warm-up, constant rate.
    "prior+logit+warmup": {**PLAIN, "learned_prior": True,
                           "preprocessing": "logit", "warmup_steps": 200},
    # The defaults at twice the rate: the 5,000-step curves still fall.
    "prior+logit+warmup+lr2e-3": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "learning_rate": 2e-3},
    "conditional+logit": {**PLAIN, "learned_prior": True,
                          "preprocessing": "logit", "num_classes": 10},
    # The ycond run without its loss: separates the loss from the warm-up.
    "conditional+logit+warmup": {**PLAIN, "learned_prior": True,
                                 "preprocessing": "logit",
                                 "warmup_steps": 200, "num_classes": 10},
    # openai/glow's `--ycond --weight_y 0.01`: its loss is bits per
    # subpixel plus weight_y times the cross-entropy in bits per image, so
    # its 0.01 is 0.01 * D = 7.84 against GlowModel's nats per image.
    "conditional+logit+warmup+ycond": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "num_classes": 10,
        "classification_weight": 0.01 * 28 * 28},
    # The conditional default since compile() moved to Adam(2e-3).
    "conditional+logit+warmup+ycond+lr2e-3": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "num_classes": 10,
        "classification_weight": 0.01 * 28 * 28, "learning_rate": 2e-3},
    # Four times openai/glow's weight: a top latent pushed further toward
    # linearly separable classes, for the 90% label-accuracy target.
    "conditional+logit+warmup+ycond4x+lr2e-3": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "num_classes": 10,
        "classification_weight": 0.04 * 28 * 28, "learning_rate": 2e-3},
    "conditional+logit+warmup+ycond16x+lr2e-3": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "num_classes": 10,
        "classification_weight": 0.16 * 28 * 28, "learning_rate": 2e-3},
    # ycond reaches label accuracy 0.81 at 5,000 steps with the label in the
    # top prior alone (392 of 784 dimensions): the label also in every
    # coupling network and the split prior.
    "conditional+logit+warmup+ycond+flow": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "num_classes": 10,
        "classification_weight": 0.01 * 28 * 28, "conditional_flow": True},
    # Capacity for global shape (the unconditional confident share stalls
    # at about 0.45 while bits/dim falls): run at a step budget that costs
    # the same wall clock as the defaults' (bench_glow.py's per-step cost).
    "prior+logit+warmup+width128": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "hidden_channels": 128},
    # width128 at 1e-3 spiked at steps ~500 and ~1,600 (validation 3.53
    # at 1,600 steps); clipping the gradient's global norm at 100 removed
    # the plain model's spikes (glow_stability.py).
    "prior+logit+warmup+width128+clip100": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "hidden_channels": 128, "global_clipnorm": 100.},
    "prior+logit+warmup+depth16": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "num_steps": 16},
    # The unconditional share stalls while bits/dim falls: depth where the
    # latents are global (7 x 7), where a step costs a quarter of the
    # 14 x 14 level's convolution arithmetic.
    "prior+logit+warmup+lr2e-3+depth8-16": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "learning_rate": 2e-3, "num_steps": [8, 16]},
    "prior+logit+warmup+lr2e-3+depth4-16": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "learning_rate": 2e-3, "num_steps": [4, 16]},
    "prior+logit+warmup+lr2e-3+pad32": {
        **PAD32},
    "prior+logit+warmup+lr2e-3+mixture10": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "learning_rate": 2e-3, "top_mixture": 10},
    "prior+logit+warmup+lr2e-3+pad32+mixture10": {
        **PAD32, "top_mixture": 10},
    # The defaults' per-step cost is 1.27x the plain model's (bench_glow.py):
    # the 16 x 16 first level holds most of the arithmetic, so two of its
    # steps fewer.
    "prior+logit+warmup+lr2e-3+pad32+mixture10+depth6-8-8": {
        **PAD32, "top_mixture": 10, "num_steps": [6, 8, 8]},
    # More modes for the top latents than the ten classes: the styles
    # within a class.
    "prior+logit+warmup+lr2e-3+pad32+mixture30": {
        **PAD32, "top_mixture": 30},
    # Every three-level run spiked near step 1,000-1,500 (its curves), and
    # depth6-8-8 went to a non-finite loss at step 2,799: the defaults with
    # the global-norm clip (a fresh model's norm is about 1,000).
    "prior+logit+warmup+lr2e-3+pad32+mixture100": {
        **PAD32, "top_mixture": 100},
    "prior+logit+warmup+lr2e-3+pad32+mixture300": {
        **PAD32, "top_mixture": 300},
    "prior+logit+warmup+lr2e-3+pad32+mixture100+beta2_0.99": {
        **PAD32, "top_mixture": 100, "beta_2": 0.99},
    # The defaults' per-step cost is ~1.45x the plain model's arithmetic
    # (the 32 x 32 frame and the third level), and the 16 x 16 first level
    # holds about two thirds of it: fewer first-level steps, at the beta_2
    # that guards against the spikes depth6-8-8 died of at 0.999.
    "prior+logit+warmup+lr2e-3+pad32+mixture100+beta2_0.99+depth6-8-8": {
        **PAD32, "top_mixture": 100, "beta_2": 0.99, "num_steps": [6, 8, 8]},
    "prior+logit+warmup+lr2e-3+pad32+mixture100+beta2_0.99+depth4-8-8": {
        **PAD32, "top_mixture": 100, "beta_2": 0.99, "num_steps": [4, 8, 8]},
    "prior+logit+warmup+lr2e-3+clip100+pad32+mixture10": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "learning_rate": 2e-3, "global_clipnorm": 100.,
        "image_size": 32, "num_levels": 3, "top_mixture": 10},
    # 2e-3 beat 1e-3 by 0.09 bits/dim at 5,000 steps: a larger rate still,
    # with the global-norm clip that removed the plain model's spikes.
    "prior+logit+warmup+lr3e-3+clip100+pad32+mixture10": {
        **PLAIN, "learned_prior": True, "preprocessing": "logit",
        "warmup_steps": 200, "learning_rate": 3e-3, "global_clipnorm": 100.,
        "image_size": 32, "num_levels": 3, "top_mixture": 10},
    # The main job's mixture moved its means little from their N(0, 0.1^2)
    # start (RMS ~0.23) and kept standard deviations 0.75-1.28: ten broad
    # modes, most drawing three or four classes (sample_quality.py
    # --per-component).
    # Means drawn N(0, 1) instead start the components far apart in the
    # 256-dimensional top latent (FlowGMM's initialization), so each
    # image's latent is claimed by one mode from the first step.
    "prior+logit+warmup+lr2e-3+pad32+mixture10+spread1": {
        **PAD32, "top_mixture": 10, "top_mixture_spread": 1.},
    # The conditional default on the unconditional default's architecture
    # (third level, digits padded to 32 x 32; no mixture: the label's top
    # prior has a component per class), openai/glow's weight_y on the
    # padded D.
    "conditional+logit+warmup+ycond+lr2e-3+pad32": {
        **CONDITIONAL_PAD32},
    # A guard against the spikes at Adam(2e-3) that costs nothing per step:
    # after a sudden gradient g, Adam moves each weight by about
    # lr * 0.1 / sqrt(1 - beta_2) (3.2 lr at Keras' 0.999, 1.0 lr at 0.99),
    # so a faster second moment caps the step that a bad batch can take.
    "prior+logit+warmup+lr2e-3+pad32+mixture10+beta2_0.99": {
        **PAD32, "top_mixture": 10, "beta_2": 0.99},
    "conditional+logit+warmup+ycond+lr2e-3+pad32+beta2_0.99": {
        **CONDITIONAL_PAD32, "beta_2": 0.99},
    # The defaults (both seeds spiked at ~1,000 steps) with the global
    # gradient norm clipped at 3x its moving average: a guard that binds
    # only on outliers.
    "prior+logit+warmup+lr2e-3+pad32+mixture10+spikeclip3": {
        **PAD32, "top_mixture": 10, "spike_clip": 3.},
    "prior+recipe": {**PLAIN, "learned_prior": True, "warmup_steps": 200,
                     "ema_momentum": 0.99},
    "conditional": {**FULL, "num_classes": 10},
}


def spike_clipped(optimizer_class, factor, momentum=0.99):
  """`optimizer_class` whose `apply` first clips the global gradient norm
  at `factor` times a moving average of the (clipped) norms, so it binds
  only on a step far above the recent ones, where a fixed clip (100: a
  fresh Glow's norm is about 1,000) bound every step. Single-device
  experiment: under a strategy the norm would be a replica's own.
  `clipped_steps` counts the steps it bound."""

  class SpikeClipped(optimizer_class):
    def build(self, variables):
      super().build(variables)
      self.norm_average = self.add_variable((), name="norm_average")
      self.clipped_steps = self.add_variable((), name="clipped_steps")

    def apply(self, grads, trainable_variables=None):
      import tensorflow as tf
      if not self.built:
        self.build(list(trainable_variables))
        self.built = True
      norm = tf.linalg.global_norm(grads)
      average = self.norm_average.value
      limit = tf.where(average > 0., factor * average, norm)
      scale = tf.minimum(1., limit / tf.maximum(norm, 1e-30))
      self.clipped_steps.assign_add(tf.cast(scale < 1., "float32"))
      kept = tf.minimum(norm, limit)
      self.norm_average.assign(tf.where(
          average > 0., momentum * average + (1. - momentum) * kept, kept))
      return super().apply([g * scale for g in grads], trainable_variables)

  return SpikeClipped


def run_one(name, options, steps, seed, out_dir):
  import keras
  import numpy as np

  import sample_quality
  from tfp_flows import callbacks, data, optimizers, plotting
  from tfp_flows.models import GlowModel

  keras.utils.set_random_seed(seed)
  splits = sample_quality.labelled_splits()
  conditional = options["num_classes"] is not None
  # openai/glow's MNIST setting: zero-pad to 32 x 32 for a third level
  # (GlowModel's `padding`; its bits/dim are the digits' upper bound,
  # -log P(x, border = 0) / (784 ln 2)).
  padding = (options.get("image_size", 28) - 28) // 2
  train_images, train_labels = splits["train"]
  model = GlowModel(
      image_shape=(28, 28, 1), padding=padding,
      # 0: N(0, I); runs without the option predate it.
      top_mixture_components=options.get("top_mixture", 0),
      num_levels=options.get("num_levels", 2),
      seed=seed, coupling=options["coupling"],
      # Older results.jsonl lines predate the architecture options.
      hidden_channels=options.get("hidden_channels", 64),
      num_steps=options.get("num_steps", 8),
      hidden_initializer=options["hidden_initializer"],
      learned_prior=options["learned_prior"],
      num_classes=options["num_classes"],
      classification_weight=options["classification_weight"],
      preprocessing=options["preprocessing"],
      conditional_flow=options.get("conditional_flow", False))
  if "top_mixture_spread" in options:
    model.top_mixture.means.assign(options["top_mixture_spread"] * (
        np.random.default_rng(seed).standard_normal(
            model.top_mixture.means.shape)))
  optimizer = optimizers.adam_with_warmup_and_ema(
      options["learning_rate"], options["warmup_steps"],
      options["ema_momentum"],
      steps - options["warmup_steps"] if options["cosine_decay"] else None,
      global_clipnorm=options.get("global_clipnorm"),
      # Keras' default; runs without the option predate it.
      beta_2=options.get("beta_2", 0.999))
  if options.get("spike_clip"):
    optimizer = spike_clipped(type(optimizer), options["spike_clip"]
                              ).from_config(optimizer.get_config())
  model.compile(optimizer=optimizer)
  train = data.image_dataset(
      train_images, 64, shuffle=True, seed=seed, repeat=True,
      labels=train_labels if conditional else None,
      max_shift=options["max_shift"])
  curve = []

  class Curve(keras.callbacks.Callback):
    def on_epoch_end(self, epoch, logs=None):
      curve.append(float(logs["bits_per_dim"]))

  start = time.perf_counter()
  # 100-step "epochs": the training curve at that resolution.
  model.fit(train, epochs=steps // 100, steps_per_epoch=100, verbose=0,
            callbacks=[Curve()])
  seconds = time.perf_counter() - start
  validation_images, validation_labels = splits["validation"]
  log_prob = np.concatenate([
      model.log_prob(validation_images[i:i + 250],
                     validation_labels[i:i + 250] if conditional else None
                     ).numpy() for i in range(0, 1000, 250)])
  result = {"run": name, "seed": seed, "steps": int(
      model.optimizer.iterations.numpy()), "options": options,
            "validation_bits_per_dim": float(np.mean(
                -log_prob / (28 * 28 * np.log(2.)))),
            "train_bits_per_dim_curve": curve, "seconds": seconds,
            "skipped_steps": int(model.skipped_steps.numpy())}
  if options.get("spike_clip"):
    result["clipped_steps"] = int(model.optimizer.clipped_steps.numpy())
  if conditional:
    # The images' own likelihood, the label marginalized: comparable with
    # the unconditional runs' validation figure.
    result["validation_marginal_bits_per_dim"] = float(np.mean(
        -np.concatenate([
            model.marginal_log_prob(validation_images[i:i + 250]).numpy()
            for i in range(0, 1000, 250)]) / (28 * 28 * np.log(2.))))
  if padding:
    result["validation_bits_per_padded_dim"] = float(np.mean(
        -log_prob / (model.event_size * np.log(2.))))
  result.update(sample_quality.score_model(model, splits,
                                           out_dir / "classifier"))
  grids = [callbacks.sample_grid(model, 100, t, 1234) for t in (0.7, 1.0)]
  plotting.save_image_grids(out_dir / f"{name}_seed{seed}_{steps}.png",
                            grids, ["T = 0.7", "T = 1"],
                            suptitle=f"{name}, {steps} steps")
  return result


def plot_curves(results_paths, out_path, runs=None, steps=None):
  """The training curves of the runs in `results_paths` (only those named
  in `runs`, and at `steps`, if given)."""
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(figsize=(7, 4.5))
  lines = [line for path in results_paths
           for line in path.read_text().splitlines()]
  for line in lines:
    r = json.loads(line)
    if (runs and r["run"] not in runs) or (steps and r["steps"] != steps):
      continue
    curve = r["train_bits_per_dim_curve"]
    drawn, = axes.plot([100 * (i + 1) for i in range(len(curve))], curve,
                       label=f"{r['run']} (seed {r['seed']})")
    axes.plot([r["steps"]], [r["validation_bits_per_dim"]], "o",
              color=drawn.get_color())
  axes.axhline(1.60, color="gray", linestyle="--", label="issue 15's target")
  axes.set(xlabel="training step", ylabel="bits/dim",
           title="training bits/dim per 100 steps; dots: validation",
           ylim=(1.4, 3.5))
  axes.legend(fontsize=8)
  figure.tight_layout()
  figure.savefig(out_path, dpi=100)


def plot_quality(results_paths, out_path):
  import matplotlib
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt
  figure, axes = plt.subplots(figsize=(7, 4.5))
  for path in results_paths:
    for line in path.read_text().splitlines():
      r = json.loads(line)
      conditional = r["options"]["num_classes"] is not None
      axes.plot(r["validation_bits_per_dim"], r["T=0.7"]["confident_share"],
                "s" if conditional else "o",
                color="tab:orange" if conditional else "tab:blue")
      axes.annotate(f"{r['run']} s{r['seed']} ({r['steps']})",
                    (r["validation_bits_per_dim"],
                     r["T=0.7"]["confident_share"]),
                    fontsize=6, xytext=(3, 2), textcoords="offset points")
  axes.axhline(0.8, color="gray", linestyle="--", label="issue 15's target")
  axes.plot([], [], "o", color="tab:blue", label="unconditional")
  axes.plot([], [], "s", color="tab:orange",
            label="class-conditional (bits/dim given the label)")
  axes.set(xlabel="validation bits/dim", ylim=(0, 1),
           ylabel="confident share of T = 0.7 samples",
           title="sample quality against likelihood (label: run, seed, steps)")
  axes.invert_xaxis()
  axes.legend(fontsize=8, loc="upper left")
  figure.tight_layout()
  figure.savefig(out_path, dpi=100)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--steps", type=int, default=None,
                      help="training steps a run (default 2000)")
  parser.add_argument("--seed", type=int, default=0)
  parser.add_argument("--runs", nargs="+", default=list(RUNS),
                      choices=list(RUNS))
  parser.add_argument("--out-dir", type=pathlib.Path,
                      default=pathlib.Path("runs/glow_recipe_sweep"))
  parser.add_argument("--plot-curves", type=pathlib.Path, default=None,
                      help="only draw the training curves of the runs in "
                           "--results (default: --out-dir's) to this file; "
                           "with --runs or --steps, only those")
  parser.add_argument("--plot-quality", type=pathlib.Path, default=None,
                      help="only draw sample quality against bits/dim of "
                           "the runs in --results to this file")
  parser.add_argument("--results", type=pathlib.Path, nargs="+",
                      default=[], help="results.jsonl files for "
                                       "--plot-quality and --plot-curves")
  parser.add_argument("--one", help=argparse.SUPPRESS)  # a child's run
  args = parser.parse_args()
  if args.plot_quality:
    plot_quality(args.results or [args.out_dir / "results.jsonl"],
                 args.plot_quality)
    return
  if args.plot_curves:
    # --runs and --steps, when given, pick the curves to draw.
    plot_curves(args.results or [args.out_dir / "results.jsonl"],
                args.plot_curves,
                runs=None if args.runs == list(RUNS) else args.runs,
                steps=args.steps)
    return
  args.steps = args.steps or 2000
  args.out_dir.mkdir(parents=True, exist_ok=True)
  if args.one:
    sys.path.insert(0, str(HERE))
    print(json.dumps(run_one(args.one, RUNS[args.one], args.steps, args.seed,
                             args.out_dir)))
    return
  results_path = args.out_dir / "results.jsonl"
  done = set()
  if results_path.exists():
    for line in results_path.read_text().splitlines():
      r = json.loads(line)
      done.add((r["run"], r["seed"], r["steps"]))
  for name in args.runs:
    if (name, args.seed, args.steps) in done:
      continue
    output = subprocess.run(
        [sys.executable, __file__, "--one", name, "--steps", str(args.steps),
         "--seed", str(args.seed), "--out-dir", str(args.out_dir)],
        capture_output=True, text=True)
    if output.returncode:
      print(f"{name}: failed\n{output.stderr[-3000:]}", flush=True)
      continue
    result = json.loads(output.stdout.strip().splitlines()[-1])
    with results_path.open("a") as f:
      f.write(json.dumps(result) + "\n")
    print(json.dumps({k: result[k] for k in (
        "run", "seed", "steps", "validation_bits_per_dim")} | {
            t: result[t] for t in ("T=0.7", "T=1")}), flush=True)


if __name__ == "__main__":
  main()
