"""Length-controlled win rate, in the manner of AlpacaEval 2 (Dubois et al. 2024,
"Length-Controlled AlpacaEval: A Simple Way to Debias Automatic Evaluators").

Judges tend to prefer longer answers. The length-controlled win rate asks what
the win rate would be if the policy's answers were as long as the baseline's:
fit a logistic regression of the judge's preference for the policy on the length
difference, then predict at zero difference. With ``d_i = len_policy − len_baseline``
and ``σ`` the standard deviation of the ``d_i``,

    P(policy preferred | d) = sigmoid(θ + φ · tanh(d / σ))

and the length-controlled win rate is ``sigmoid(θ)`` (tanh(0) = 0). The targets
``y_i ∈ [0, 1]`` may be soft (a pairwise judge's probability, ½ for a tie); the
fit maximises ``Σ_i y_i log p_i + (1 − y_i) log(1 − p_i) − (λ/2)(θ² + φ²)`` by
Newton's method in float64 (the ridge ``λ`` keeps the fit finite when every
answer wins or the preference is perfectly separated by length). AlpacaEval's
GLM also has a per-instruction difficulty term; with one baseline and one policy
per fit it is omitted here.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def fit_length_logistic(preference: Sequence[float], length_difference: Sequence[float],
                        ridge: float = 1e-3, iterations: int = 100,
                        tolerance: float = 1e-12) -> tuple[float, float, float]:
    """``(θ, φ, σ)`` of the model in the module docstring, fitted by Newton's method."""
    y = np.asarray(preference, dtype=np.float64)
    d = np.asarray(length_difference, dtype=np.float64)
    if y.size == 0:
        raise ValueError("no preferences to fit")
    scale = float(d.std())
    x = np.tanh(d / scale) if scale > 0 else np.zeros_like(d)
    design = np.stack([np.ones_like(x), x], axis=1)
    theta = np.zeros(2)
    for _ in range(iterations):
        p = _sigmoid(design @ theta)
        gradient = design.T @ (y - p) - ridge * theta
        hessian = (design * (p * (1 - p))[:, None]).T @ design + ridge * np.eye(2)
        step = np.linalg.solve(hessian + 1e-12 * np.eye(2), gradient)
        theta = theta + step
        if float(np.abs(step).max()) < tolerance:
            break
    return float(theta[0]), float(theta[1]), scale


def length_controlled_win_rate(preference: Sequence[float],
                               length_difference: Sequence[float],
                               ridge: float = 1e-3) -> float:
    """``sigmoid(θ)``: the fitted win rate at equal length (module docstring)."""
    theta, _, _ = fit_length_logistic(preference, length_difference, ridge)
    return float(_sigmoid(np.asarray(theta)))
