"""``kdinterp world ...``: generate and preview the concept world.

Errors are reported by the ``kdinterp`` command's one error path (:mod:`kdinterp.cli`): run these commands
as ``kdinterp world generate``, not through this sub-app alone. The generator (numpy, pandas, Pillow) is
imported inside the commands: every ``kdinterp`` stage command loads this sub-app, and none of them needs it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

__all__ = ["app"]

app = typer.Typer(
    help="The concept world: a procedural dataset with known concepts (classification set + Broden probe set).",
    no_args_is_help=True,
)

PARAMS_FILE = Path("params.yaml")
WORLD_DIR = Path("data/concept_world")


@app.command()
def generate(
    params: Annotated[Path, typer.Option(help="Parameter file; only its 'world:' section is read.")] = PARAMS_FILE,
    out: Annotated[Path, typer.Option(help="Output directory; must not exist or be empty.")] = WORLD_DIR,
    workers: Annotated[int, typer.Option(min=1, help="Rendering processes.")] = 2,
    quiet: Annotated[bool, typer.Option(help="No progress bar or summary.")] = False,
) -> None:
    """Generate the concept world: train/ and val/ (ImageFolder), probe/ (Broden layout), world.json."""
    from rich.console import Console

    from kdinterp.world.generate import generate_world
    from kdinterp.world.params import load_world_params

    world = generate_world(load_world_params(params), out, workers=workers, progress=not quiet)
    if not quiet:
        top = max(world["coverage"], key=world["coverage"].get)
        counts = world["counts"]
        Console().print(f"{out}: {len(world['classes'])} classes, {counts['train']} train / {counts['val']} val "
                        f"images, {counts['probe']} probe images; largest concept {top} covers "
                        f"{world['coverage'][top]:.2%} of probe pixels")


@app.command()
def preview(
    world: Annotated[Path, typer.Option(help="A generated world directory.")] = WORLD_DIR,
    out: Annotated[Path, typer.Option(help="PNG file to write.")] = Path("concept_world_preview.png"),
    probe_scenes: Annotated[int, typer.Option(min=1, help="Probe scenes shown with their masks.")] = 6,
) -> None:
    """Write a labelled PNG contact sheet: each class with its saliency map, probe scenes with their masks, textures."""
    from kdinterp.world.preview import write_preview

    write_preview(world, out, probe_scenes=probe_scenes)
