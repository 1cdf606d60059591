"""GlowModel under MirroredStrategy on 2 logical CPU devices (a subprocess:
logical devices must be configured before TensorFlow starts)."""

import json
import subprocess
import sys
import textwrap

import numpy as np

SCRIPT = textwrap.dedent("""
    import json, os
    os.environ["TF_CPP_MIN_LOG_LEVEL"] = "2"
    import numpy as np, tensorflow as tf, keras
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(
        cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    from tfp_flows import data
    from tfp_flows.models import GlowModel

    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (64, 8, 8, 1)).astype(np.uint8)
    # Replicas see different halves; their statistics differ a lot.
    images[32:] //= 4
    kwargs = dict(image_shape=(8, 8, 1), num_levels=2, num_steps=2,
                  hidden_channels=8)

    reference = GlowModel(**kwargs)
    reference.initialize(images)
    expected = [w.numpy() for w in reference.weights if "actnorm_" in w.path]

    strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])

    def replicas_agree(w):
        # A Keras 3 variable made in the scope wraps a tf MirroredVariable.
        values = [v.numpy() for v in
                  strategy.experimental_local_results(w._value)]
        return len(values) == 2 and np.array_equal(values[0], values[1])
    with strategy.scope():
        model = GlowModel(**kwargs)
        model.compile(optimizer=keras.optimizers.Adam(1e-3))
        actnorm_weights = [w for w in model.weights if "actnorm_" in w.path]
        # fit initializes ActNorm from its first (global) batch; 0 epochs
        # leaves the initial statistics in place to compare.
        model.fit(data.image_dataset(images, 64), epochs=0, verbose=0)
        init_match = len(actnorm_weights) == len(expected) > 0 and all(
            np.allclose(w.numpy(), e, atol=1e-5)
            for w, e in zip(actnorm_weights, expected))
        replicas_equal_after_init = all(replicas_agree(w)
                                        for w in actnorm_weights)
        history = model.fit(data.image_dataset(images, 64), epochs=2, verbose=0)
    replicas_equal_after_fit = all(replicas_agree(w)
                                   for w in model.trainable_weights)
    print(json.dumps({
        "replicas": strategy.num_replicas_in_sync,
        "init_matches_single_device": bool(init_match),
        "replicas_equal_after_init": bool(replicas_equal_after_init),
        "replicas_equal_after_fit": bool(replicas_equal_after_fit),
        "losses": [float(v) for v in history.history["loss"]],
    }))
""")


def test_actnorm_initialization_is_global_and_replicas_stay_in_sync():
  result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True,
                          text=True, timeout=600)
  assert result.returncode == 0, result.stderr[-3000:]
  report = json.loads(result.stdout.strip().splitlines()[-1])
  assert report["replicas"] == 2
  # ActNorm statistics come from the whole global batch, not from each
  # replica's half, and are the same on both replicas.
  assert report["init_matches_single_device"]
  assert report["replicas_equal_after_init"]
  assert report["replicas_equal_after_fit"]
  assert all(np.isfinite(report["losses"]))

