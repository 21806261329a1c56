"""Server settings: one plain dataclass, loaded from JSON, the environment and the command line.

Precedence (lowest first): defaults, ``--config settings.json``, environment
(``DIFFUSION_LAYERS_TOKEN``), command-line flags. Nothing here is global: ``serve`` builds one
``Settings`` and hands it to ``create_app(settings, engine)``.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from backend.engine.acceleration import COMPILE_MODES
from backend.engine.types import EngineConfig

TOKEN_ENV = "DIFFUSION_LAYERS_TOKEN"
LOOPBACK_NAMES = ("localhost",)


class SettingsError(ValueError):
    """A setting has a bad value; the message names the setting and the value."""


@dataclass
class Settings:
    host: str = "127.0.0.1"
    port: int = 7860
    token: str | None = None
    # One 'name token' line per artist, re-read on change (removing a line revokes it).
    tokens_file: str | None = None
    models_dir: str | None = None
    output_dir: str = "outputs"
    # Where styles are kept (<styles_dir>/<name>.json); None = "styles" in the per-user data dir.
    styles_dir: str | None = None
    default_model: str | None = None
    device: str = "auto"
    dtype: str = "auto"
    preload: bool = False
    allow_pickle: bool = False
    cache_models: int = 2
    tiny_dir: str | None = None  # where the built-in tiny test models are written
    # Per-model default VAE: {"checkpoint name": "vae name"} (names as in GET /v1/models).
    model_vaes: dict[str, str] = field(default_factory=dict)
    compile: str = "off"  # off | background | blocking: torch.compile the UNet (CUDA only)
    # Two-pass high-resolution generation for regions much larger than the model's native
    # size (docs/upscale.md); a job's ``hires`` field overrides it.
    hires: bool = True
    max_request_mb: float = 256.0
    max_image_pixels: int = 4096 * 4096
    max_queue: int = 64
    max_queued_per_client: int = 0  # per artist (token name / address); 0 = no limit
    job_ttl_s: float = 3600.0
    max_jobs_kept: int = 64
    keepalive_s: float = 10.0
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    log_progress: bool = True
    # Per-client token bucket (backend/api/rate_limit.py); 0 turns it off. Loopback clients
    # are exempt unless rate_limit_loopback is set.
    rate_limit_per_s: float = 30.0
    rate_limit_burst: float = 120.0
    rate_limit_loopback: bool = False

    # --- checks --------------------------------------------------------------------------

    def check(self) -> None:
        """Raise SettingsError naming the first bad setting (guard clauses, in field order)."""
        if not (0 <= self.port <= 65535):
            raise SettingsError(f"port={self.port!r}: must be 0..65535")
        if self.token is not None and len(self.token) < 8:
            raise SettingsError("token: must be at least 8 characters")
        if self.compile not in COMPILE_MODES:
            raise SettingsError(
                f"compile={self.compile!r}: must be one of {', '.join(COMPILE_MODES)}"
            )
        if not isinstance(self.model_vaes, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in self.model_vaes.items()
        ):
            raise SettingsError(
                f"model_vaes={self.model_vaes!r}: must map checkpoint names to VAE names"
            )
        if self.max_request_mb <= 0:
            raise SettingsError(f"max_request_mb={self.max_request_mb!r}: must be > 0")
        if self.max_image_pixels < 64:
            raise SettingsError(f"max_image_pixels={self.max_image_pixels!r}: must be >= 64")
        if self.max_queued_per_client < 0:
            raise SettingsError(
                f"max_queued_per_client={self.max_queued_per_client!r}: must be >= 0"
            )
        if self.max_queue < 1:
            raise SettingsError(f"max_queue={self.max_queue!r}: must be >= 1")
        if self.job_ttl_s <= 0:
            raise SettingsError(f"job_ttl_s={self.job_ttl_s!r}: must be > 0")
        if self.max_jobs_kept < 1:
            raise SettingsError(f"max_jobs_kept={self.max_jobs_kept!r}: must be >= 1")
        if self.keepalive_s <= 0:
            raise SettingsError(f"keepalive_s={self.keepalive_s!r}: must be > 0")
        if not (0 <= self.rate_limit_per_s < float("inf")):
            raise SettingsError(f"rate_limit_per_s={self.rate_limit_per_s!r}: must be >= 0")
        if not (1 <= self.rate_limit_burst < float("inf")):
            raise SettingsError(f"rate_limit_burst={self.rate_limit_burst!r}: must be >= 1")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise SettingsError("ssl_certfile/ssl_keyfile: give both or neither")
        if not self.is_loopback() and not self.token and not self.tokens_file:
            raise SettingsError(
                f"host={self.host!r} is reachable from other machines: refusing to start "
                f"without a token. Pass --token or set {TOKEN_ENV}, or bind 127.0.0.1."
            )

    def is_loopback(self) -> bool:
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def resolved_styles_dir(self) -> str:
        """``styles_dir``, else the per-user data folder's ``styles`` (beside its models)."""
        if self.styles_dir:
            return self.styles_dir
        from backend.catalog import default_models_dir

        return str(default_models_dir().parent / "styles")

    @property
    def max_request_bytes(self) -> int:
        return int(self.max_request_mb * 1024 * 1024)

    # --- conversions ---------------------------------------------------------------------

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            models_dir=self.models_dir,
            default_model=self.default_model,
            device=self.device,
            dtype=self.dtype,
            allow_pickle=self.allow_pickle,
            cache_models=self.cache_models,
            tiny_dir=self.tiny_dir,
            compile=self.compile,
            model_vaes=dict(self.model_vaes),
            hires=self.hires,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write as JSON (the token is written too: keep the file private)."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, target)

    @classmethod
    def from_dict(cls, data: dict) -> Settings:
        if not isinstance(data, dict):
            raise SettingsError(f"settings: expected a JSON object, got {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise SettingsError(f"unknown setting(s): {', '.join(unknown)}")
        return cls(**data)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Settings:
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise SettingsError(f"config={str(path)!r}: cannot read ({exc.strerror})") from exc
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise SettingsError(f"config={str(path)!r}: not valid JSON ({exc})") from exc
        return cls.from_dict(data)

    @classmethod
    def from_env_and_args(
        cls, args: argparse.Namespace | None = None, env: dict[str, str] | None = None
    ) -> Settings:
        """Defaults < ``args.config`` file < environment < explicit command-line flags.

        ``args`` attributes that are None (flags not given) leave the lower layers alone.
        """
        env = dict(os.environ) if env is None else env
        config_path = getattr(args, "config", None) if args is not None else None
        settings = cls.load(config_path) if config_path else cls()
        if env.get(TOKEN_ENV):
            settings.token = env[TOKEN_ENV]
        if args is not None:
            mapping = {"model": "default_model"}
            for name in (
                "host",
                "port",
                "token",
                "tokens_file",
                "max_queued_per_client",
                "models_dir",
                "output_dir",
                "styles_dir",
                "model",
                "device",
                "dtype",
                "allow_pickle",
                "compile",
                "hires",
                "max_request_mb",
                "keepalive_s",
                "ssl_certfile",
                "ssl_keyfile",
            ):
                value = getattr(args, name, None)
                if value is not None:
                    setattr(settings, mapping.get(name, name), value)
            if getattr(args, "preload", False):
                settings.preload = True
        if settings.models_dir is None:
            # The same folder `diffusion-layers models download` fills: --models-dir, else
            # $DIFFUSION_LAYERS_MODELS, else the per-user folder.
            from backend.catalog import resolve_models_dir

            settings.models_dir = str(resolve_models_dir(None, env))
        return settings
