"""Command line of the training job: one flag per TrainConfig field (help = the field's docstring), plus --config.

Exit status: 0 trained, 2 bad configuration, 3 the mart broke its data contract (each failed expectation is
listed), 4 the warehouse is misconfigured, unreachable or not built yet, 1 anything else.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import typing
from pathlib import Path
from typing import Any

from training.config import TrainConfig, field_docs, field_types, load_config, parse_value

logger = logging.getLogger("training")

EXIT_CONFIG = 2
EXIT_CONTRACT = 3
EXIT_WAREHOUSE = 4


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _metavar(annotation: Any) -> str:
    if typing.get_origin(annotation) is tuple:
        return "A,B,..."
    inner = [arg for arg in typing.get_args(annotation) if arg is not type(None)] or [annotation]
    return {int: "INT", float: "FLOAT", Path: "PATH"}.get(inner[0], "TEXT")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m training",
        description="Train PPO on marts.training_bars and evaluate it against buy-and-hold, flat and random.",
    )
    parser.add_argument("--config", type=Path, help="YAML file of TrainConfig fields (flags override it)")
    docs, types = field_docs(), field_types()
    for field in dataclasses.fields(TrainConfig):
        annotation = types[field.name]
        help_text = docs.get(field.name, "")
        if annotation is bool:
            parser.add_argument(
                _flag(field.name),
                dest=field.name,
                action=argparse.BooleanOptionalAction,
                default=None,
                help=f"{help_text} (default: {field.default})",
            )
            continue
        choices = typing.get_args(annotation) if typing.get_origin(annotation) is typing.Literal else None
        default = field.default
        shown = ",".join(map(str, default)) if isinstance(default, tuple) else default
        parser.add_argument(
            _flag(field.name),
            dest=field.name,
            default=None,
            choices=choices,
            metavar=None if choices else _metavar(annotation),
            type=lambda text, annotation=annotation: parse_value(annotation, text),
            help=f"{help_text} (default: {shown})",
        )
    return parser


def parse_config(argv: list[str] | None = None) -> TrainConfig:
    args = build_parser().parse_args(argv)
    overrides: dict[str, Any] = {
        name: value for name, value in vars(args).items() if name != "config" and value is not None
    }
    return load_config(args.config, overrides)


def main(argv: list[str] | None = None) -> int:
    try:
        config = parse_config(argv)
    except (ValueError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_CONFIG
    logging.basicConfig(level=config.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    # Imported after parsing so that --help is instant (torch, SB3 and GX take seconds to import).
    from training.contract import ContractViolation
    from training.features import MartSchemaError
    from training.folds import FoldSelectionError
    from training.job import run_training
    from training.mart import SymbolSelectionError
    from warehouse_db import WarehouseError, resolve_settings

    try:
        result = run_training(config, resolve_settings())
    except WarehouseError as error:
        logger.error("%s", error)
        return EXIT_WAREHOUSE
    except ContractViolation as violation:
        logger.error("%s", violation)
        return EXIT_CONTRACT
    except (MartSchemaError, SymbolSelectionError, FoldSelectionError, FileExistsError) as error:
        logger.error("%s", error)
        return EXIT_CONFIG
    logger.info("run %s finished; report at %s", result.run_id, result.report_path.resolve())
    return 0
