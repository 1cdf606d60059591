"""Do a Glow's samples look like digits? A digit classifier's verdict.

A small convolutional classifier is trained on the training split of the
digits (the 8,000 of ../shared/data/mnist, split 6,000 / 1,000 / 1,000 with
seed 0 as everywhere else; cached under --cache-dir) and scored on the test
split. Then, for a model's samples at temperatures 0.7 and 1.0:

- confident share: the share of samples the classifier puts in one class
  with p >= 0.9 (real digits: about 0.95);
- class entropy: the entropy in bits of the histogram of predicted classes
  (10 balanced classes: 3.32 bits; a model drawing only ones: 0);
- Frechet distance between the classifier's penultimate features of the
  samples and of the test digits (as FID does with Inception features); the
  training digits' distance to the test digits is the floor;
- for a class-conditional model, label accuracy: the share of samples
  classified as the label they were drawn for.

    python benchmarks/sample_quality.py --model saved_models/glow_mnist/glow.keras

The last line is JSON. With --per-component, first one JSON line per
component of a top mixture (`component_scores`). `score_model(model, ...)`
is what `glow_recipe_sweep.py` calls on each model it trains.
"""

import argparse
import json
import os
import pathlib

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import numpy as np  # noqa: E402
import scipy.linalg  # noqa: E402

from tfp_flows import data  # noqa: E402
from tfp_flows.callbacks import ema_weights  # noqa: E402

SHARED_MNIST = pathlib.Path(__file__).resolve().parents[2] / "shared/data/mnist"
TEMPERATURES = (0.7, 1.0)
CONFIDENT = 0.9


def labelled_splits(data_dir=SHARED_MNIST):
  """The digits' `(images, labels)` splits every Glow benchmark uses."""
  return data.load_mnist_idx(data_dir, 1000, 1000, seed=0, with_labels=True)


def classifier(splits, cache_dir):
  """A digit classifier (cached): `(model, features_model, test_accuracy)`.

  Two 3x3 convolutions with max-pooling, a 128-unit hidden layer (the
  features) and dropout; Adam, 10 epochs, with up-to-2-pixel shifts of the
  training digits so shifted samples are not penalized for position.
  """
  path = pathlib.Path(cache_dir) / "digit_classifier.keras"
  if path.exists():
    model = keras.saving.load_model(path)
  else:
    keras.utils.set_random_seed(0)
    model = keras.Sequential([
        keras.Input((28, 28, 1)),
        keras.layers.Rescaling(1 / 255.),
        keras.layers.Conv2D(32, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Conv2D(64, 3, activation="relu"),
        keras.layers.MaxPooling2D(),
        keras.layers.Flatten(),
        keras.layers.Dense(128, activation="relu", name="features"),
        keras.layers.Dropout(0.3),
        keras.layers.Dense(10, activation="softmax"),
    ])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy",
                  metrics=["accuracy"])
    images, labels = splits["train"]
    model.fit(data.image_dataset(images, 64, shuffle=True, labels=labels,
                                 max_shift=2),
              epochs=10, verbose=0,
              validation_data=data.image_dataset(
                  splits["validation"][0], 256,
                  labels=splits["validation"][1]))
    path.parent.mkdir(parents=True, exist_ok=True)
    # Another run may read `path`, or train its own classifier beside this
    # one: write under a name of this process's own, then rename.
    partial = path.with_name(f"partial{os.getpid()}_" + path.name)
    model.save(partial)
    os.replace(partial, path)
  features = keras.Model(model.inputs, model.get_layer("features").output)
  test_images, test_labels = splits["test"]
  accuracy = float(np.mean(
      np.argmax(model.predict(test_images, verbose=0), -1) == test_labels))
  return model, features, accuracy


def frechet_distance(features_a, features_b):
  """`|mu_a - mu_b|^2 + tr(S_a + S_b - 2 (S_a S_b)^(1/2))` of two feature
  sets' Gaussian fits."""
  mu_a, mu_b = features_a.mean(0), features_b.mean(0)
  cov_a = np.cov(features_a, rowvar=False)
  cov_b = np.cov(features_b, rowvar=False)
  root, _ = scipy.linalg.sqrtm(cov_a @ cov_b, disp=False)
  return float(np.sum((mu_a - mu_b) ** 2)
               + np.trace(cov_a + cov_b - 2. * np.real(root)))


def image_scores(images, classifier_model, features_model, reference,
                 labels=None):
  """The scores of uint8 images `[N, 28, 28, 1]` (module docstring)."""
  probabilities = classifier_model.predict(images, verbose=0, batch_size=500)
  predicted = np.argmax(probabilities, -1)
  histogram = np.bincount(predicted, minlength=10) / len(predicted)
  nonzero = histogram[histogram > 0]
  scores = {
      "confident_share": float(np.mean(probabilities.max(-1) >= CONFIDENT)),
      "class_entropy_bits": float(-np.sum(nonzero * np.log2(nonzero))),
      "frechet_distance": frechet_distance(
          features_model.predict(images, verbose=0, batch_size=500),
          reference),
  }
  if labels is not None:
    scores["label_accuracy"] = float(np.mean(predicted == labels))
  return scores


def score_model(model, splits, cache_dir, num_samples=1000, seed=0):
  """Scores of `model`'s samples at each temperature, and the floor (the
  training digits), as a dict; the model's moving-average weights if its
  optimizer keeps them and `fit` has not written them yet."""
  classifier_model, features_model, accuracy = classifier(splits, cache_dir)
  test_images = splits["test"][0]
  reference = features_model.predict(test_images, verbose=0, batch_size=500)
  train_images = splits["train"][0]
  floor = image_scores(train_images[:num_samples], classifier_model,
                       features_model, reference, splits["train"][1][:num_samples])
  result = {"classifier_test_accuracy": accuracy, "real_training_digits": floor}
  num_classes = getattr(model, "num_classes", None)
  labels = (np.arange(num_samples, dtype=np.int32) % num_classes
            if num_classes else None)
  with ema_weights(model):
    for temperature in TEMPERATURES:
      samples = []
      for start in range(0, num_samples, 250):
        batch_labels = None if labels is None else labels[start:start + 250]
        samples.append(model.sample(
            min(250, num_samples - start), temperature=temperature,
            seed=seed + start,
            **({} if labels is None else {"labels": batch_labels})).numpy())
      result[f"T={temperature:g}"] = image_scores(
          np.concatenate(samples), classifier_model, features_model,
          reference, labels)
  return result


def component_scores(model, splits, cache_dir, num_samples=100,
                     temperature=0.7, seed=0):
  """For a model with a top mixture, per component: its weight, the mean
  and range of its standard deviations, the RMS of its mean and the
  distance to the nearest other component's mean, and what the classifier
  says of `num_samples` samples drawn from that component alone at
  `temperature` (the split exits at `temperature` times N(0, I), as
  `sample` draws them): the confident share and the histogram of predicted
  classes. Shows whether the components took on digit classes."""
  import tensorflow as tf
  classifier_model, _, _ = classifier(splits, cache_dir)
  mixture = model.top_mixture
  if mixture is None:
    raise ValueError("component_scores: the model has no top mixture "
                     "(top_mixture_components=0).")
  weights = tf.nn.softmax(mixture.logits).numpy()
  means, log_stds = mixture.means.numpy(), mixture.log_stds.numpy()
  distances = np.sqrt(((means[:, None] - means[None]) ** 2).sum(-1))
  np.fill_diagonal(distances, np.inf)
  rng = np.random.default_rng(seed)
  exit_size = model.event_size - mixture.event_size
  rows = []
  for k in range(mixture.num_components):
    top = means[k] + temperature * np.exp(log_stds[k]) * rng.standard_normal(
        (num_samples, mixture.event_size))
    exits = temperature * rng.standard_normal((num_samples, exit_size))
    latents = np.concatenate([exits, top], 1).astype(np.float32)
    probabilities = classifier_model.predict(model.decode(latents).numpy(),
                                             verbose=0, batch_size=500)
    rows.append({
        "component": k, "weight": float(weights[k]),
        "mean_log_std": float(log_stds[k].mean()),
        "std_range": [float(np.exp(log_stds[k]).min()),
                      float(np.exp(log_stds[k]).max())],
        "mean_rms": float(np.sqrt(np.mean(means[k] ** 2))),
        "nearest_mean_distance": float(distances[k].min()),
        "confident_share": float(np.mean(probabilities.max(-1) >= CONFIDENT)),
        "classes": np.bincount(probabilities.argmax(-1),
                               minlength=10).tolist()})
  return rows


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--model", type=pathlib.Path, required=True,
                      help="a saved GlowModel (.keras)")
  parser.add_argument("--data-dir", type=pathlib.Path, default=SHARED_MNIST)
  parser.add_argument("--cache-dir", type=pathlib.Path,
                      default=pathlib.Path("runs/sample_quality"))
  parser.add_argument("--num-samples", type=int, default=1000)
  parser.add_argument("--per-component", action="store_true",
                      help="for a top mixture, also each component's "
                           "weight, spread and classes (100 samples each "
                           "at T = 0.7), one JSON line per component")
  args = parser.parse_args()
  # `import tfp_flows` (through `data` above) registers GlowModel.
  model = keras.saving.load_model(args.model)
  splits = labelled_splits(args.data_dir)
  if args.per_component:
    for row in component_scores(model, splits, args.cache_dir):
      print(json.dumps(row))
  result = score_model(model, splits, args.cache_dir, args.num_samples)
  print(json.dumps(result))


if __name__ == "__main__":
  main()
