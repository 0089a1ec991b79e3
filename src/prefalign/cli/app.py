"""The root typer app; each command group registers itself from its own module."""

from __future__ import annotations

import typer

from prefalign.cli import (
    agents,
    evaluate,
    feedback,
    judge,
    online,
    pipeline,
    plan,
    prm,
    reward,
    sweep,
    train,
)
from prefalign.cli.data import data_app
from prefalign.cli.models import models_app

app = typer.Typer(
    help="prefalign: preference-based alignment of language models — SFT, reward models, "
         "the DPO family, online RL, and the evaluation that proves the result.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
eval_app = typer.Typer(help="Evaluate reward models and policies.", no_args_is_help=True)

app.add_typer(data_app, name="data")
app.add_typer(models_app, name="models")
app.add_typer(eval_app, name="eval")
for module in (train,):
    module.register(app)
reward.register(app, eval_app)
online.register(app)
evaluate.register(eval_app)
plan.register(app, eval_app)
pipeline.register(app, eval_app)
sweep.register(app)
judge.register(eval_app)
prm.register(eval_app)
agents.register(eval_app, data_app)
feedback.register(data_app)
