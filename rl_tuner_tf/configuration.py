"""Configuration as values: dataclasses whose fields carry their help and
their checks, flattened into one namespace of settings.

A configuration is a tree of ``Values`` dataclasses (a run's tuning, its
off-policy or on-policy part, ...). Each leaf field is one *setting* with a
flat name, the field's name behind its class's ``PREFIX`` (``OnPolicyConfig``
prefixes ``pg_``: its ``epochs`` is the setting ``pg_epochs``). That flat
namespace is the one users see, everywhere the same:

  * the command-line flags, generated from the fields (``define_flags``):
    name, default and help are written once, on the field;
  * a run's ``config.json`` and the preset files (``presets/*.json``), a
    JSON object {setting: value} (``to_settings`` / ``from_settings``);
  * the errors: a bad value raises ``ConfigError`` naming the setting, on
    construction (``__post_init__``), so no invalid configuration exists.

Only the command-line modules read absl flags; the library takes these
values.
"""
import dataclasses
import json
import math
import sys
import typing
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple


class ConfigError(ValueError):
  """A bad setting; ``name`` is the setting (and its flag)."""

  def __init__(self, name: str, message: str):
    super().__init__(f"--{name}: {message}")
    self.name = name


Check = Callable[[Any], Optional[str]]


def setting(default: Any = dataclasses.MISSING, help: str = "", *,  # pylint: disable=redefined-builtin
            check: Optional[Check] = None, choices: Tuple[Any, ...] = (),
            default_factory: Any = dataclasses.MISSING) -> Any:
  """A dataclass field that is one setting: its help text and its check
  (a function returning an error message, or None when the value is good)."""
  return dataclasses.field(
      default=default, default_factory=default_factory,
      metadata={"help": help, "check": check, "choices": tuple(choices)})


def positive(value: Any) -> Optional[str]:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return "must be a number"
  return None if math.isfinite(value) and value > 0 else "must be > 0"


def positive_int(value: Any) -> Optional[str]:
  if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
    return "must be a positive integer"
  return None


def non_negative(value: Any) -> Optional[str]:
  if isinstance(value, bool) or not isinstance(value, (int, float)):
    return "must be a number"
  return None if math.isfinite(value) and value >= 0 else "must be >= 0"


def at_least(minimum: int) -> Check:
  """Check: an integer >= minimum."""
  def check(value):
    if isinstance(value, bool) or not isinstance(value, int):
      return "must be an integer"
    return None if value >= minimum else f"must be >= {minimum}"
  return check


def positive_ints(value: Any) -> Optional[str]:
  """Check: one or more positive integers (layer sizes)."""
  return (None if value and min(value) > 0
          else "must be positive integers like 100 or 64,64")


def in_range(low: float, high: float, *, open_low: bool = False) -> Check:
  """Check: low <= value <= high (low < value with open_low)."""
  def check(value):
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      return "must be a number"
    ok = (low < value if open_low else low <= value) and value <= high
    return None if ok else (f"must be in {'(' if open_low else '['}{low:g}, "
                            f"{high:g}]")
  return check


def optional(check: Check) -> Check:
  """Check: None (the setting's automatic value), or as ``check``."""
  return lambda value: None if value is None else check(value)


@dataclasses.dataclass(frozen=True)
class Setting:
  """One leaf of a configuration tree, as the flat namespace names it."""
  name: str                 # the flat setting / flag name
  path: Tuple[str, ...]     # attribute path from the root
  field: dataclasses.Field
  type: Any                 # the field's type (Optional unwrapped)

  @property
  def help(self) -> str:
    return self.field.metadata.get("help", "")

  @property
  def choices(self) -> Tuple[Any, ...]:
    return self.field.metadata.get("choices", ())

  @property
  def default(self) -> Any:
    if self.field.default is not dataclasses.MISSING:
      return self.field.default
    if self.field.default_factory is not dataclasses.MISSING:
      return self.field.default_factory()
    return None


def _unwrap(kind):
  """(T, True) for Optional[T], (T, False) otherwise."""
  args = typing.get_args(kind)
  if typing.get_origin(kind) is typing.Union and type(None) in args:
    rest = [a for a in args if a is not type(None)]
    return rest[0], True
  return kind, False


class Values:
  """Base of the configuration dataclasses: validation on construction,
  the flat settings namespace, conversion from and to JSON values.

  Subclasses are dataclasses; ``PREFIX`` is put before their fields' names
  in the flat namespace; ``_validate`` adds checks across fields.
  """
  PREFIX = ""

  def __post_init__(self):
    hints = typing.get_type_hints(type(self))
    for field in dataclasses.fields(self):
      value = getattr(self, field.name)
      kind, may_be_none = _unwrap(hints[field.name])
      name = type(self).PREFIX + field.name
      if isinstance(kind, type) and issubclass(kind, Values):
        continue  # validated on its own construction
      if value is None:
        if not may_be_none:
          raise ConfigError(name, "must be given")
        continue
      if kind is float and isinstance(value, int) and not isinstance(
          value, bool):
        object.__setattr__(self, field.name, float(value))
        value = float(value)
      value = _normalised(value, kind)
      object.__setattr__(self, field.name, value)
      if not _is_instance(value, kind):
        raise ConfigError(name, f"must be a {_type_name(kind)} (got "
                          f"{value!r})")
      choices = field.metadata.get("choices", ())
      if choices and value not in choices:
        raise ConfigError(name, f"must be one of "
                          f"{', '.join(map(str, choices))} (got {value!r})")
      check = field.metadata.get("check")
      message = check(value) if check else None
      if message:
        raise ConfigError(name, f"{message} (got {value!r})")
    self._validate()

  def _validate(self) -> None:
    """Checks across fields; raise ConfigError naming a setting."""

  @classmethod
  def settings(cls, prefix: str = "",
               path: Tuple[str, ...] = ()) -> Iterator[Setting]:
    """The leaves of this class's tree, in field order."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
      kind, _ = _unwrap(hints[field.name])
      if isinstance(kind, type) and issubclass(kind, Values):
        yield from kind.settings(prefix, path + (field.name,))
      else:
        yield Setting(prefix + cls.PREFIX + field.name, path + (field.name,),
                      field, kind)

  @classmethod
  def setting_names(cls) -> Tuple[str, ...]:
    return tuple(s.name for s in cls.settings())

  def to_settings(self) -> Dict[str, Any]:
    """{setting: value}, JSON-ready (config.json's and the presets' form)."""
    out = {}
    for s in type(self).settings():
      value = self
      for part in s.path:
        value = getattr(value, part)
      out[s.name] = value
    return out

  @classmethod
  def from_flags(cls, flag_values: Any) -> "Values":
    """An instance from the flags given on ``flag_values`` (defaults for the
    others): what a command line's main builds; ConfigError names a bad
    one."""
    return cls.from_settings(given_flags(cls, flag_values))

  @classmethod
  def from_settings(cls, settings: Mapping[str, Any], *,
                    ignore_unknown: bool = False) -> "Values":
    """An instance from {setting: value}; missing settings take their
    defaults. Unknown names are an error naming them (unless
    ignore_unknown: a file that holds other concerns' settings too)."""
    known = {s.name: s for s in cls.settings()}
    unknown = sorted(set(settings) - set(known))
    if unknown and not ignore_unknown:
      raise ConfigError(unknown[0], f"unknown setting(s) {', '.join(unknown)}"
                        f" for {cls.__name__}")
    return cls._build({k: v for k, v in settings.items() if k in known})

  @classmethod
  def _build(cls, settings, prefix=""):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
      kind, _ = _unwrap(hints[field.name])
      if isinstance(kind, type) and issubclass(kind, Values):
        kwargs[field.name] = kind._build(settings, prefix)  # pylint: disable=protected-access
      else:
        name = prefix + cls.PREFIX + field.name
        if name in settings:
          kwargs[field.name] = settings[name]
    return cls(**kwargs)


def _normalised(value, kind):
  """JSON's lists as tuples, whole numbers of a float dict as floats."""
  origin = typing.get_origin(kind)
  if origin is tuple and isinstance(value, list):
    return tuple(value)
  if (origin is dict and isinstance(value, dict)
      and typing.get_args(kind)[1] is float):
    return {k: float(v) if isinstance(v, int) and not isinstance(v, bool)
            else v for k, v in value.items()}
  return value


def _is_instance(value, kind):
  if kind is float:
    return isinstance(value, float)
  if kind is int:
    return isinstance(value, int) and not isinstance(value, bool)
  origin = typing.get_origin(kind)
  if origin in (tuple, list):
    item = typing.get_args(kind)[0]
    return isinstance(value, (tuple, list)) and all(
        _is_instance(v, item) for v in value)
  if origin is dict:
    _, item = typing.get_args(kind)
    return isinstance(value, dict) and all(
        isinstance(k, str) and (_is_instance(v, item) or (
            item is float and _is_instance(v, int)))
        for k, v in value.items())
  return isinstance(value, kind) if isinstance(kind, type) else True


def _type_name(kind):
  return {float: "number", int: "integer", bool: "boolean",
          str: "string"}.get(kind, getattr(kind, "__name__", str(kind)))


def read_settings(path: str) -> Dict[str, Any]:
  """{setting: value} from a JSON file (a run's config.json, a preset)."""
  try:
    with open(path, encoding="utf-8") as f:
      settings = json.load(f)
  except FileNotFoundError as e:
    raise ConfigError("config", f"no such file {path!r}") from e
  except json.JSONDecodeError as e:
    raise ConfigError("config", f"{path!r} is not JSON: {e}") from e
  if not isinstance(settings, dict):
    raise ConfigError("config", f"{path!r} must hold a JSON object")
  return settings


def define_flags(cls: type, flag_values: Any, *, skip: Tuple[str, ...] = (),
                 defaults: Optional[Mapping[str, Any]] = None) -> Tuple[str, ...]:
  """Defines one absl flag per setting of ``cls`` (except ``skip``) in
  ``flag_values``: name, default and help from the field; returns the names.

  ``defaults`` replaces some defaults (a command whose preset is applied
  later passes None for those, so that "not given" can be told apart).
  """
  from absl import flags  # pylint: disable=g-import-not-at-top
  defaults = dict(defaults or {})
  # The flags belong to the calling module, as if it had defined them (its
  # --helpshort lists them); absl names the main module after argv[0].
  module_name = sys._getframe(1).f_globals.get("__name__")  # pylint: disable=protected-access
  if module_name == "__main__":
    module_name = sys.argv[0]
  names = []
  for s in cls.settings():
    if s.name in skip:
      continue
    default = defaults.get(s.name, s.default)
    args = dict(name=s.name, default=default, help=s.help or s.name,
                flag_values=flag_values, module_name=module_name)
    if s.choices:
      flags.DEFINE_enum(enum_values=[str(c) for c in s.choices], **args)
    elif s.type is bool:
      flags.DEFINE_bool(**args)
    elif s.type is int:
      flags.DEFINE_integer(**args)
    elif s.type is float:
      flags.DEFINE_float(**args)
    elif typing.get_origin(s.type) in (tuple, list):
      flags.DEFINE_list(**dict(args, default=(
          None if default is None else [str(v) for v in default])))
    elif typing.get_origin(s.type) is dict:
      flags.DEFINE_list(**dict(args, default=(
          None if default is None else [f"{k}={v}"
                                        for k, v in default.items()])))
    else:
      flags.DEFINE_string(**args)
    names.append(s.name)
  return tuple(names)


def from_flag(s: Setting, raw: Any) -> Any:
  """A flag's value as the setting's value: list flags of a tuple setting
  give its items' type, of a dict setting 'name=value' items."""
  origin = typing.get_origin(s.type)
  if raw is None or origin not in (tuple, list, dict):
    return raw
  items = [str(v).strip() for v in raw if str(v).strip()]
  try:
    if origin is dict:
      out = {}
      for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
          raise ValueError(f"{item!r} is not name=value")
        out[key.strip()] = typing.get_args(s.type)[1](value)
      return out
    return tuple(typing.get_args(s.type)[0](v) for v in items)
  except ValueError as e:
    raise ConfigError(s.name, str(e)) from e


def given_flags(cls: type, flag_values: Any, *,
                skip: Tuple[str, ...] = ()) -> Dict[str, Any]:
  """{setting: value} of ``cls``'s settings (except ``skip``: flags of the
  same name that are not the setting's) whose flags were given (set on the
  command line or by code), converted to setting values."""
  out = {}
  for s in cls.settings():
    if s.name in skip:
      continue
    if s.name in flag_values and not flag_values[s.name].using_default_value:
      out[s.name] = from_flag(s, flag_values[s.name].value)
  return out
