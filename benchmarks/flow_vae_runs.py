"""A FlowVAE run as the benchmarks read it: from its output folder, or from
the record of it committed under docs/records/.

On the project's machines only the git repository is sure to survive from
one session to the next: runs/ (checkpoints, logs, saved models) may be gone
when the next begins. A run the docs quote is therefore recorded: a few kilobytes of JSON with
its flags, its test figures and its training and validation -ELBO per epoch,
enough to print its table row again, draw its curve and fit it
(flow_vae_table.py and flow_vae_extrapolate.py read records and run folders
alike). The weights are not recorded; the command in the record retrains them.

    python benchmarks/flow_vae_runs.py runs/long/planar40 docs/records/long/planar40.json

records a run, finished or not (a run still training, or stopped by the end of
a session, is recorded without test figures).
"""

import argparse
import functools
import importlib.util
import json
import pathlib
import subprocess
import sys

import tensorflow as tf

from tfp_flows.callbacks import read_epoch_log

ROOT = pathlib.Path(__file__).resolve().parents[1]
# Flags that say where a run wrote, not what it trained, and its wall-clock
# budget (whether it trained every epoch is `epochs_trained`'s question):
# two runs that differ only in these are the same experiment.
NOT_THE_EXPERIMENT = ("data_dir", "output_dir", "export_dir", "max_minutes")


@functools.cache
def _train_flow_vae():
  """examples/train_flow_vae.py as a module, for its flag parser."""
  spec = importlib.util.spec_from_file_location(
      "train_flow_vae", ROOT / "examples" / "train_flow_vae.py")
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  return module


def flags_of(arguments):
  """The flags train_flow_vae.py runs with `arguments` (its command line
  without the script), as JSON holds them (paths as strings)."""
  args = _train_flow_vae().parse_args(list(arguments))
  return json.loads(json.dumps(vars(args), default=str))


def epoch_curve(output_dir, metric="val_elbo"):
  """`metric` per epoch of a run (a column of its history.csv: "elbo",
  "val_elbo", ...), over every process that trained it.

  history.csv is written before each epoch's checkpoint and flushed at once
  (`callbacks.epoch_log`), so a killed and resumed run has every epoch in
  it; an epoch logged twice keeps the later row. (TensorBoard's event files
  are flushed every two minutes: a kill could lose the last epochs' events
  while their checkpoint survived, and the curve would close the gap.)
  """
  return read_epoch_log(pathlib.Path(output_dir) / "history.csv").get(
      metric, [])


def logged_train_seconds(output_dir):
  """Training time of a run over every process that trained it: per process,
  the span from its TensorBoard event file's creation to its last training
  event, so the gaps between a kill and a resume are not counted. A killed
  process's last two minutes of events may be unflushed and uncounted."""
  seconds = 0.
  for path in sorted((pathlib.Path(output_dir) / "logs" / "train").glob(
      "events.*")):
    created = float(path.name.split(".")[3])
    wall_times = [event.wall_time for event in _events(path)]
    seconds += max(wall_times, default=created) - created
  return seconds


def experiment(flags):
  """The flags that define what a run trained and how it was scored.

  A flag the run's script did not have yet takes its default: adding a flag
  to train_flow_vae.py does not make every record another experiment.
  """
  with_defaults = {**flags_of([]), **flags}
  return {key: value for key, value in with_defaults.items()
          if key not in NOT_THE_EXPERIMENT}


def _events(path):
  for record in tf.data.TFRecordDataset(str(path)):
    yield tf.compat.v1.Event.FromString(record.numpy())


def _git_commit():
  try:
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                          capture_output=True, text=True,
                          check=True).stdout.strip()
  except (OSError, subprocess.CalledProcessError):
    return None


def from_folder(output_dir):
  """A run as a record (dict), read from its train_flow_vae.py output folder.

  `metrics` is its metrics.json without the per-epoch history (None while it
  has not finished); `flags` come from metrics.json, else from flags.json,
  which the script writes when it starts.
  """
  output_dir = pathlib.Path(output_dir)
  metrics_path = output_dir / "metrics.json"
  metrics = (json.loads(metrics_path.read_text()) if metrics_path.exists()
             else None)
  if metrics is not None:
    metrics.pop("history", None)
    flags = metrics["config"]
  elif (output_dir / "flags.json").exists():
    flags = json.loads((output_dir / "flags.json").read_text())
  else:
    flags = None
  parameters = None
  export_dir = (flags or {}).get("export_dir")
  model_path = pathlib.Path(export_dir or ".", "flow_vae.keras")
  if metrics is not None and export_dir and model_path.is_file():
    # Slow imports, only when a model is on disk; tfp_flows.models
    # registers FlowVAE with Keras, which load_model needs.
    import keras  # noqa: PLC0415
    import tfp_flows.models  # noqa: PLC0415, F401
    parameters = keras.models.load_model(model_path).count_params()
  return {
      "name": output_dir.name,
      "recorded_at_commit": _git_commit(),
      "flags": flags,
      "metrics": metrics,
      "parameters": parameters,
      "train_seconds": logged_train_seconds(output_dir),
      # -ELBO, as the docs report it; Keras logs the ELBO.
      "validation_negative_elbo": [-v for v in epoch_curve(output_dir)],
      "train_negative_elbo": [-v for v in epoch_curve(output_dir, "elbo")],
  }


def load(path):
  """A run from its output folder or from its record (a .json file)."""
  path = pathlib.Path(path)
  if path.suffix == ".json":
    return json.loads(path.read_text())
  return from_folder(path)


def write(run, path):
  path = pathlib.Path(path)
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(json.dumps(run, indent=1) + "\n")
  return path


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("run", type=pathlib.Path,
                      help="a train_flow_vae.py output folder")
  parser.add_argument("record", type=pathlib.Path, help="the .json to write")
  args = parser.parse_args()
  run = from_folder(args.run)
  if not run["validation_negative_elbo"]:
    sys.exit(f"{args.run}: no epoch logged (history.csv)")
  write(run, args.record)
  print(f"wrote {args.record}: {len(run['validation_negative_elbo'])} epochs, "
        + ("finished" if run["metrics"] else "unfinished"))


if __name__ == "__main__":
  main()
