"""The preference losses' parameters, for ``prefalign dpo --help`` without importing torch.

A copy of ``prefalign.losses.preference.loss_parameter_table()`` for the built-in
losses (``{param: {loss: (default, description)}}``), which reads them from the
loss functions' signatures; ``tests/test_losses_preference.py`` checks that the
two are equal, so a changed signature fails the tests until this table is
regenerated with ``python -c "from prefalign.losses.preference import
loss_parameter_table as t; import pprint; pprint.pprint(t(), sort_dicts=False)"``.
Validation never reads this table: ``LossConfig`` checks keys against the live
signatures, registered losses included.
"""

BUILTIN_LOSS_PARAMETERS: dict[str, dict[str, tuple[object, str]]] = {
    "beta": {
        "dpo": (0.1, "β, the strength of the KL anchor."),
        "robust": (0.1, "β, the strength of the KL anchor."),
        "ipo": (0.1, "β, the strength of the KL anchor."),
        "ipo_mean": (0.1, "β, the strength of the KL anchor."),
        "hinge": (0.1, "β, the strength of the KL anchor."),
        "simpo": (2.0, "β, the strength of the KL anchor."),
        "rpo": (0.1, "β, the strength of the KL anchor."),
        "caldpo": (0.1, "β, the strength of the KL anchor."),
        "drdpo": (0.1, "β, the strength of the KL anchor."),
        "xpo": (0.1, "β, the strength of the KL anchor."),
    },
    "epsilon": {
        "dpo": (
            0.0,
            "Label smoothing ε (cDPO, robust, simpo): the assumed rate of flipped labels.",
        ),
        "robust": (
            0.1,
            "Label smoothing ε (cDPO, robust, simpo): the assumed rate of flipped labels.",
        ),
        "simpo": (
            0.0,
            "Label smoothing ε (cDPO, robust, simpo): the assumed rate of flipped labels.",
        ),
        "rpo": (
            0.0,
            "Label smoothing ε (cDPO, robust, simpo): the assumed rate of flipped labels.",
        ),
    },
    "center_logits": {"dpo": (False, "dpo: subtract the batch mean of h.")},
    "gamma": {"simpo": (0.5, "simpo: target reward margin γ.")},
    "lam": {"orpo": (0.1, "orpo: weight λ of the odds-ratio term.")},
    "alpha": {
        "rpo": (1.0, "rpo: weight α of the NLL term."),
        "xpo": (1e-05, "xpo: weight α of the exploration term α·log π(ỹ|x), ỹ ~ π_ref."),
    },
    "beta_prime": {"drdpo": (1.0, "drdpo: temperature β′ of the soft minimum.")},
}
