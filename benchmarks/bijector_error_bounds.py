"""How close Planar and Radial come to the bounds tests/test_bijector_math.py
allows: per case, D and dtype, the largest error in units of the test's
bound (before its safety factor).

    python benchmarks/bijector_error_bounds.py

Forward: |y - y_exact| / (eps (1 + |y| + condition)), `condition` the
first-order propagation of relative perturbations of x and of every
parameter; the test allows 32. Log-det: (|ld - ld_exact| - propagated) /
(eps (1 + |ld|)), against the paper's formula in long double; the test
allows 2 (D + 4). The last lines give the maxima.
"""

import pathlib
import sys

import numpy as np

TESTS = pathlib.Path(__file__).resolve().parents[1] / "tests"
sys.path.insert(0, str(TESTS))

import reference_flows  # noqa: E402
from flow_cases import (ALL_CASES, DTYPES, EVENT_SIZES, case_params,  # noqa: E402
                        make_bijector_from)
from test_bijector_math import (_condition, _float64_log_det_and_gradients,  # noqa: E402
                                _inputs, _rng)


def main():
  worst_forward, worst_log_det = (0., None), (0., None)
  for kind, case in ALL_CASES:
    for d in EVENT_SIZES:
      for dtype in DTYPES:
        eps = np.finfo(dtype).eps
        rng = _rng(kind, case, d, "reference")
        params = case_params(kind, case, d, dtype, rng)
        x = _inputs(rng, d, dtype)
        y = make_bijector_from(kind, params).forward(x).numpy()
        exact = np.asarray(reference_flows.FORWARD[kind](params, x),
                           np.longdouble)
        forward = float(np.max(
            np.abs(np.asarray(y, np.longdouble) - exact)
            / (eps * (1. + np.abs(exact) + _condition(kind, params, x)))))

        rng = _rng(kind, case, d, "jacobian")
        params = case_params(kind, case, d, dtype, rng)
        x = _inputs(rng, d, dtype, n=16)
        log_det = make_bijector_from(kind, params).forward_log_det_jacobian(
            x, event_ndims=1).numpy()
        exact = np.asarray(reference_flows.LOG_DET[kind](params, x),
                           np.longdouble)
        _, grad = _float64_log_det_and_gradients(kind, params, x)
        propagated = (d + 2) * eps * np.sum(np.abs(grad) * (np.abs(x) + 1.),
                                            -1)
        excess = float(np.max(
            (np.abs(np.asarray(log_det, np.longdouble) - exact) - propagated)
            .clip(0) / (eps * (1. + np.abs(exact)))))
        where = (kind, case, d, dtype.__name__)
        print(*where, f"forward {forward:.3g}", f"log-det {excess:.3g}",
              flush=True)
        worst_forward = max(worst_forward, (forward, where))
        worst_log_det = max(worst_log_det, (excess, where),
                            key=lambda pair: pair[0])
  print("largest forward error (test allows 32):", worst_forward)
  print("largest log-det excess (test allows 2 (D + 4)):", worst_log_det)


if __name__ == "__main__":
  main()
