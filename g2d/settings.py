"""g2d's settings: one model, loaded from ``G2D_*`` environment variables and a ``g2d.toml``.

Precedence is environment > file > defaults. The file is the one ``G2D_CONFIG`` names, else
``./g2d.toml``, else ``/etc/g2d/g2d.toml``. ``SiteConfig`` holds the fields as plain pydantic
fields with descriptions, so a Prefect block can reuse them; ``Settings`` adds the loading.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
    TomlConfigSettingsSource,
)

from g2d.core.errors import G2dUserError
from g2d.core.mirrors import MIRROR_SCHEMES as MIRROR_SCHEMES  # re-exported
from g2d.core.mirrors import Resource, check_mirror_url

ENV_PREFIX = "G2D_"
CONFIG_ENV = "G2D_CONFIG"
CONFIG_NAME = "g2d.toml"
SYSTEM_CONFIG = Path("/etc/g2d/g2d.toml")


# Gentoo's official sources. g2d never contacts them in tests; the lab points at 127.0.0.1.
GENTOO_MIRRORS: Mapping[Resource, tuple[str, ...]] = {
    Resource.releases: ("https://distfiles.gentoo.org/releases/",),
    Resource.repos: (
        "rsync://rsync.gentoo.org/gentoo-portage/",
        "https://github.com/gentoo-mirror/gentoo.git",
    ),
    Resource.snapshots: ("https://distfiles.gentoo.org/snapshots/",),
    Resource.distfiles: ("https://distfiles.gentoo.org/distfiles/",),
    Resource.binpkgs: ("https://distfiles.gentoo.org/releases/amd64/binpackages/",),
    Resource.kernels: (),
    Resource.patchfiles: (),
    Resource.meta: (),
    Resource.packages: (),
}


def default_state_dir() -> Path:
    """/var/lib/g2d for root, else the XDG state directory."""
    if os.geteuid() == 0:
        return Path("/var/lib/g2d")
    xdg = os.environ.get("XDG_STATE_HOME", "")
    base = Path(xdg) if os.path.isabs(xdg) else Path.home() / ".local" / "state"
    return base / "g2d"


def default_mirrors() -> dict[Resource, list[str]]:
    return {r: list(urls) for r, urls in GENTOO_MIRRORS.items()}


def _absolute(path: Path) -> Path:
    path = path.expanduser()
    if not path.is_absolute():
        raise ValueError(f"needs an absolute path, got {os.fspath(path)!r}")
    return path


def _mirror_url(url: str) -> str:
    return check_mirror_url(url)


def _split_words(value: object) -> object:
    # G2D_MIRRORS__RELEASES="https://a/ https://b/" reads as a list, like a mirror list file
    if isinstance(value, str) and value.lstrip().startswith("["):
        try:
            return json.loads(value)  # '["https://a/"]', where no JSON decoding came before
        except ValueError:
            pass
    return value.split() if isinstance(value, str) else value


AbsolutePath = Annotated[Path, AfterValidator(_absolute)]
MirrorUrl = Annotated[str, AfterValidator(_mirror_url)]
MirrorList = Annotated[list[MirrorUrl], BeforeValidator(_split_words)]
# NoDecode: G2D_ESYNC__STAGE3_VARIANTS="openrc systemd" is words, not JSON
Words = Annotated[list[str], NoDecode, BeforeValidator(_split_words)]
PathList = Annotated[list[AbsolutePath], NoDecode, BeforeValidator(_split_words)]
MirrorWords = Annotated[list[MirrorUrl], NoDecode, BeforeValidator(_split_words)]

# Where Gentoo's release key is installed (sec-keys/openpgp-keys-gentoo-release).
GENTOO_RELEASE_KEYS = (Path("/usr/share/openpgp-keys/gentoo-release.asc"),)


class EsyncConfig(BaseModel):
    """What ``g2d esync`` fetches beyond the mirror lists (the ``[esync]`` table)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    arch: str = Field(default="amd64", description="The stage3 arch of releases/.")
    stage3_variants: Words = Field(
        default_factory=lambda: ["openrc"],
        description="Stage3 variants kept under releases/ (openrc, systemd, desktop-openrc, ...).",
    )
    keep: int = Field(
        default=2, ge=1, description="Builds kept per stage3 variant, and dated snapshots kept."
    )
    release_keys: PathList = Field(
        default_factory=lambda: list(GENTOO_RELEASE_KEYS),
        description="Armored OpenPGP public key files that sign releases, snapshots and the "
        "repository's Manifests: Gentoo's release keys for real use, the lab's in the lab.",
    )
    distfiles_workers: int = Field(default=8, ge=1, description="Distfiles fetched at once.")
    profiles: MirrorWords = Field(
        default_factory=list,
        description="Mirror URLs of the site's profiles/ tree (no mirror list type exists "
        "for it; the old tool pulled it beside packages/).",
    )


class SiteConfig(BaseModel):
    """What a site configures. Plain fields, so Prefect blocks and TOML files share them."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dom0_root: AbsolutePath = Field(
        default=Path("/var/lib/portage"),
        description="Root of the dom0 tree served to clients "
        "(binpkgs, kernels, packages, patchfiles, profiles, releases, repos, snapshots, "
        "distfiles, meta).",
    )
    state_dir: AbsolutePath = Field(
        default_factory=default_state_dir,
        description="Where g2d keeps its own state: /var/lib/g2d for root, else "
        "$XDG_STATE_HOME/g2d or ~/.local/state/g2d.",
    )
    lab_dir: AbsolutePath = Field(
        default_factory=lambda data: data["state_dir"] / "lab",
        description="Where the offline lab (keys, mirrors, pools, disk images) is built; "
        "defaults to <state_dir>/lab.",
    )
    mirrors: dict[Resource, MirrorList] = Field(
        default_factory=default_mirrors,
        description="Mirror URLs per resource type, tried in order. A type left out keeps "
        "its default; Gentoo publishes no kernels, patchfiles, meta or packages, so those "
        "default to none.",
    )

    mirror_lists: AbsolutePath | None = Field(
        default=None,
        description="A directory of mirror list files named by resource type (releases, "
        "repos, ...; the old tool's binpkg, kernel and package too): one URL per line, '#' "
        "comments. A type with a file there takes its list from the file instead of "
        "`mirrors`.",
    )

    @field_validator("mirrors", mode="after")
    @classmethod
    def _keep_unset_defaults(cls, mirrors: dict[Resource, list[str]]) -> dict[Resource, list[str]]:
        # a file naming only [mirrors].releases must not erase the other types
        return {r: mirrors.get(r, list(GENTOO_MIRRORS[r])) for r in Resource}

    esync: EsyncConfig = Field(
        default_factory=EsyncConfig,
        description="What g2d esync fetches: stage3 arch and variants, how many builds to "
        "keep, the release keys that verify, distfiles concurrency, the site's profiles tree.",
    )

    def to_json(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


def find_config_file(env: Mapping[str, str] | None = None) -> Path | None:
    """The g2d.toml to read: $G2D_CONFIG, else ./g2d.toml, else /etc/g2d/g2d.toml, else none."""
    env = os.environ if env is None else env
    named = env.get(CONFIG_ENV)
    if named:
        path = Path(named).expanduser()
        if not path.is_file():
            raise InvalidSettings(
                f"{CONFIG_ENV} names {os.fspath(path)!r}, which is not a file",
                hint=f"create it, or unset {CONFIG_ENV}",
            )
        return path
    for path in (Path.cwd() / CONFIG_NAME, SYSTEM_CONFIG):
        if path.is_file():
            return path
    return None


class Settings(SiteConfig, BaseSettings):
    """SiteConfig loaded from the environment and the settings file."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter="__",  # G2D_MIRRORS__RELEASES='["https://..."]'
        extra="forbid",
        frozen=True,
    )

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources = [init_settings, env_settings]
        path = find_config_file()
        if path is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=path))
        return tuple(sources)


class InvalidSettings(G2dUserError):
    """A setting has a value g2d refuses, or the settings file cannot be read."""


def load_settings(**overrides: Any) -> Settings:
    """Settings from env and file (``overrides`` win over both); errors name the key."""
    try:
        path = find_config_file()
        return Settings(**overrides)
    except tomllib.TOMLDecodeError as e:
        raise InvalidSettings(f"{path}: not valid TOML: {e}") from e
    except SettingsError as e:  # a G2D_* variable that should hold JSON and does not
        found = re.search(r'field "(\w+)"', str(e))
        name = f"{ENV_PREFIX}{found[1].upper()}" if found else f"a {ENV_PREFIX}* variable"
        raise InvalidSettings(
            f"invalid settings: {name} is not valid JSON",
            hint=f'e.g. {ENV_PREFIX}MIRRORS=\'{{"releases": ["https://host/releases/"]}}\'',
        ) from e
    except ValidationError as e:
        raise InvalidSettings(describe_errors(e), hint=where_settings_come_from(path, e)) from e


def describe_errors(error: ValidationError) -> str:
    """One line naming each bad key (``mirrors.releases.0``) and what is wrong with it."""
    parts = []
    for err in error.errors():
        if err["type"] == "default_factory_not_called":
            continue  # a consequence of another field's error, which is reported
        key = ".".join(str(p) for p in err["loc"] if p != "[key]")
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown setting {key!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            parts.append(f"setting {key!r}: {msg}")
    return "invalid settings: " + "; ".join(parts)


def where_settings_come_from(path: Path | None, error: ValidationError) -> str:
    """Where the first bad key is set: its environment variable, or the file."""
    first = error.errors()[0]
    file = os.fspath(path) if path else f"a {CONFIG_NAME} (none was found)"
    if first["type"] == "extra_forbidden":
        return f"{file} may set: {', '.join(SiteConfig.model_fields)}"
    loc = [str(p) for p in first["loc"] if p != "[key]"]
    if first["type"] == "enum":
        return f"set {ENV_PREFIX}{loc[0].upper()} or [{loc[0]}] in {file}"
    var = ENV_PREFIX + "__".join(loc[:2]).upper()  # G2D_MIRRORS__RELEASES for mirrors.releases.0
    return f"set {var} or {'.'.join(loc[:2])} in {file}"


def render_json(config: SiteConfig) -> str:
    return json.dumps(config.to_json(), indent=2)


def render_toml(config: SiteConfig) -> str:
    """The settings as a g2d.toml that loads back to the same values."""

    def value(v: Any) -> str:  # JSON strings, numbers and booleans are valid TOML values
        if isinstance(v, list):
            return f"[{', '.join(value(x) for x in v)}]"
        return json.dumps(v, ensure_ascii=False)

    data = config.to_json()
    lines = [f"{k} = {value(v)}" for k, v in data.items() if isinstance(v, str)]
    for table, items in data.items():
        if isinstance(items, dict):
            lines += ["", f"[{table}]"]
            lines += [f"{k} = {value(v)}" for k, v in items.items()]
    return "\n".join(lines) + "\n"
