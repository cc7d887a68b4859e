"""The Typer app and the helpers every command module shares. Commands stay thin: parse, call the API."""
from __future__ import annotations

import functools
import sys
from pathlib import Path
from typing import Any, Callable

import typer

app = typer.Typer(
    name="genzoo", no_args_is_help=True, add_completion=False, rich_markup_mode=None,
    help="Train, measure and explore autoencoders, VAEs and GANs. Run `genzoo COMMAND --help` for examples.",
)

# Errors a user can cause with bad input: print the message, no traceback.
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, KeyError, FileNotFoundError, FileExistsError,
                                                 NotImplementedError, RuntimeError)


def handle_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            msg = e.args[0] if isinstance(e, KeyError) and e.args else str(e)
            typer.echo(f"error: {msg}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def wrote(*paths: Path | str) -> None:
    """Every command prints what it wrote."""
    for p in paths:
        typer.echo(f"wrote {p}")


def load_run(run: Path):
    import genzoo
    return genzoo.load(run)


def run_data(run: Path, data: str | None) -> str:
    """The dataset a run was trained on (from run.json), unless `data` names another."""
    from ..data import run_data as spec
    return spec(run, data)[0]


def run_dataset(run: Path, data: str | None, split: str):
    """A split of the run's dataset with the run's data options (run.json), or of `data` when it names
    another dataset."""
    from ..data import load_run_data
    return load_run_data(run, split, data)


def parse_labels(labels: str | None) -> list[int] | None:
    if labels is None:
        return None
    try:
        return [int(s) for s in labels.split(",") if s.strip()]
    except ValueError:
        raise ValueError(f"--labels {labels!r}: expected comma-separated class indices such as 3,3,7") from None


def check_n(n: int, what: str = "images", option: str = "-n") -> None:
    if n < 1:
        raise ValueError(f"{option} {n}: expected the number of {what}, an integer >= 1")


def check_labels(model, labels: list[int], run: Path | str) -> None:
    """--labels only for a class-conditional model, and each label in 0..K-1."""
    if not getattr(model, "conditional", False):
        raise ValueError(f"--labels: {run} holds an unconditional {model.model_type} model, which takes no class "
                         f"labels; drop --labels (only class-conditional models such as cvae and cgan take them)")
    k = int(getattr(model.config, "num_classes", 0) or 0)
    bad = [v for v in labels if not 0 <= v < k] if k else []
    if bad:
        raise ValueError(f"--labels: class {bad[0]} is out of range; {run} has classes 0..{k - 1}")


def sample_settings(model, run: Path | str, **flags: Any) -> dict[str, Any]:
    """The sampler settings given on the command line (None: not given) as model.sample keywords; a setting
    the model's sample does not take is an error naming the model's own settings."""
    kw = {k: v for k, v in flags.items() if v is not None}
    model.check_sample_settings(kw, str(run), prefix="--")
    return kw


# the sampler flags of `sample` and `evaluate` (one definition: the same names and help in both)
OPT_TRUNCATION = typer.Option(None, "--truncation", help="GANs: resample |z| > T")
OPT_TEMPERATURE = typer.Option(None, "--temperature", help="scale of the prior / code Gaussian (default 1)")
OPT_STEPS = typer.Option(None, "--steps", help="diffusion: number of sampling steps (DDIM)")
OPT_SAMPLER = typer.Option(None, "--sampler", help="diffusion: ddim (default) | ddpm (all T steps)")
OPT_ETA = typer.Option(None, "--eta", help="diffusion: DDIM noise, 0 deterministic .. 1 DDPM-like")
OPT_GUIDANCE = typer.Option(None, "--guidance", help="diffusion: classifier-free guidance scale (0 "
                            "unconditional, 1 conditional, > 1 guided)")


def main() -> None:
    from . import commands  # noqa: F401  (registers every command module)
    if sys.argv[1:2] != ["explore"]:  # batch commands reuse their heap pages; the server hands memory back
        from .._memory import steady_heap
        steady_heap()
    app(prog_name="genzoo")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
