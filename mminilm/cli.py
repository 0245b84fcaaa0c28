"""Command lines generated from config dataclasses: each option is declared once, as a field.

A field's default, help text and choices (`option(...)`) become the flag, its `--help` line and
its YAML key; `parse_config` merges defaults < `--config FILE.yaml` < flags. Fields without a
default are required (from the command line or the YAML file); `None` means "not given" and is
shown without a default. The training (`mminilm.distill`, `mminilm.pretrain`) and evaluation
(`eval.xnli`, `eval.mlqa`, `eval.retrieval`) CLIs all come from here.
"""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Any

import yaml

REQUIRED = dataclasses.MISSING


def option(default: Any, help: str, **metadata: Any) -> Any:
    """A config field: its default (REQUIRED for none), help text, and e.g. choices=(...)."""
    if isinstance(default, list):
        return dataclasses.field(default_factory=lambda: list(default), metadata={"help": help, **metadata})
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def passed_on(config_class: type, name: str, default: Any = dataclasses.MISSING) -> Any:
    """Field `name` of `config_class` (its help and choices, declared there once), optionally with
    another default: for a config whose stage hands these values straight on to `config_class`
    (`python -m mminilm.pretrain` runs the training loop with a TrainConfig)."""
    source = next(f for f in dataclasses.fields(config_class) if f.name == name)
    metadata = {key: value for key, value in source.metadata.items() if key != "help"}
    value = default_of(source) if default is dataclasses.MISSING else default
    return option(value, source.metadata.get("help", ""), passed_on=config_class.__name__, **metadata)


def passed_on_values(config: Any, config_class: type) -> dict[str, Any]:
    """The values of `config`'s `passed_on(config_class, ...)` fields, keyed by field name."""
    return {f.name: getattr(config, f.name) for f in dataclasses.fields(config)
            if f.metadata.get("passed_on") == config_class.__name__}


def default_of(f: dataclasses.Field) -> Any:
    return f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default


def _field_type(f: dataclasses.Field, default: Any) -> type:
    if default is not None and default is not dataclasses.MISSING:
        return type(default)
    annotation = str(f.type)
    return int if annotation.startswith("int") else float if annotation.startswith("float") else str


def build_parser(config_class: type, prog: str | None = None, description: str | None = None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=description,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default=None, help="YAML file of options (command-line flags override it)")
    for f in dataclasses.fields(config_class):
        flag = "--" + f.name.replace("_", "-")
        default = default_of(f)
        help_text = f.metadata.get("help", "").replace("%", "%%")  # argparse formats help with %
        if default is dataclasses.MISSING:
            shown = " (required)"
        elif default is None or default == []:
            shown = ""
        else:
            shown = f" (default: {' '.join(map(str, default)) if isinstance(default, list) else default})"
        if isinstance(default, bool):
            parser.add_argument(flag, default=None, action=argparse.BooleanOptionalAction, help=help_text + shown)
        elif isinstance(default, list):
            parser.add_argument(flag, nargs="+", default=None, choices=f.metadata.get("choices"), help=help_text + shown)
        else:
            parser.add_argument(flag, type=_field_type(f, default), default=None, choices=f.metadata.get("choices"),
                                help=help_text + shown)
    return parser


def parse_config(argv: list[str] | None, config_class: type, prog: str | None = None,
                 description: str | None = None) -> Any:
    """Defaults < YAML --config < command-line flags; a bad value or a missing required option
    exits 2 with one line naming it (argparse's error)."""
    parser = build_parser(config_class, prog, description)
    args = parser.parse_args(argv)
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    values: dict[str, Any] = {}
    if args.config:
        path = Path(args.config)
        if not path.is_file():
            parser.error(f"--config {path} does not exist")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            parser.error(f"--config {path} is not valid YAML ({str(error).splitlines()[0]})")
        if not isinstance(loaded, dict):
            parser.error(f"--config {path} must be a YAML mapping of option: value")
        unknown = sorted(set(k.replace("-", "_") for k in loaded) - set(fields))
        if unknown:
            parser.error(f"--config {path}: unknown options {unknown}")
        for key, value in loaded.items():
            name = key.replace("-", "_")
            try:
                values[name] = coerce_option(value, default_of(fields[name]), fields[name])
            except ValueError as error:
                parser.error(f"--config {path}: {key}: {error}")
    for name in fields:
        value = getattr(args, name)
        if value is not None:
            values[name] = value
    missing = [f"--{name.replace('_', '-')}" for name, f in fields.items()
               if default_of(f) is dataclasses.MISSING and name not in values]
    if missing:
        parser.error(f"the following arguments are required: {', '.join(missing)}")
    return config_class(**values)


def coerce_option(value: Any, default: Any, f: dataclasses.Field | None = None) -> Any:
    """A YAML value as the option's type. YAML 1.1 reads `1e-3` and `1e4` as strings and users
    write them all the time; a scalar where a list belongs is an error, not a guess."""
    if default is None or default is dataclasses.MISSING:
        kind = _field_type(f, default) if f is not None else str
        if value is None:
            return None
        default = kind(0) if kind in (int, float) else ""
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        raise ValueError(f"expected true or false, got {value!r}")
    if isinstance(default, list):
        if isinstance(value, list):
            return [str(v) for v in value]
        raise ValueError(f"expected a list (e.g. [en, de] or one '- item' per line), got the scalar {value!r}")
    if isinstance(default, float):
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a number, got {value!r}") from None
    if isinstance(default, int):
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"expected a whole number, got {value!r}") from None
        if not number.is_integer():
            raise ValueError(f"expected a whole number, got {value!r}")
        return int(number)
    if isinstance(value, (list, dict)):
        raise ValueError(f"expected a single value, got {value!r}")
    return value if value is None else str(value)
