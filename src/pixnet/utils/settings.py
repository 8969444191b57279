"""Package-wide defaults for progress bars, the torch device and the download folder (``pixnet.settings``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Settings", "settings"]


@dataclass
class Settings:
    """Defaults that every call uses unless it is given its own value (per-call arguments always win).

    Attributes
    ----------
    progress
        Show tqdm progress bars in training, prediction and aggregation (calls with ``progress=None``).
    device
        Torch device for training and feature extraction (calls with ``device=None``): ``"auto"`` (cuda, then
        mps, then cpu), or any device string torch accepts (``"cpu"``, ``"cuda:1"``).
    cache_dir
        Folder for downloaded weights and datasets; ``None`` (the default): ``$PIXNET_CACHE``, else
        ``~/.cache/pixnet``, read when a download needs it (``pixnet.utils.downloads.cache_dir``).

    Examples
    --------
    >>> import pixnet
    >>> pixnet.settings.progress = False  # no progress bars from here on, e.g. in a batch job
    >>> pixnet.settings.device
    'auto'
    >>> pixnet.settings.reset()
    >>> pixnet.settings.progress
    True

    """

    progress: bool = True
    device: str = "auto"
    cache_dir: Path | None = None

    def __setattr__(self, name: str, value) -> None:
        if name not in self.__dataclass_fields__:
            raise AttributeError(
                f"pixnet.settings has no setting {name!r}; the settings are {list(self.__dataclass_fields__)}."
            )
        if name == "progress" and not isinstance(value, bool):
            raise TypeError(f"pixnet.settings.progress must be True or False, got {value!r}.")
        if name == "device":
            value = str(value)
            if value != "auto":
                import torch

                try:
                    torch.device(value)
                except (RuntimeError, TypeError) as error:
                    raise ValueError(f"pixnet.settings.device: {value!r} is not a torch device or 'auto'.") from error
        if name == "cache_dir" and value is not None:
            value = Path(value).expanduser()
        object.__setattr__(self, name, value)

    def reset(self) -> None:
        """Back to the defaults."""
        for name, value in Settings().__dict__.items():
            setattr(self, name, value)

    def progress_for(self, progress: bool | None) -> bool:
        """A call's ``progress`` argument, or the default when it is ``None``."""
        return self.progress if progress is None else bool(progress)

    def device_for(self, device: str | None):
        """A call's ``device`` argument, or the default when it is ``None``."""
        return self.device if device is None else device


settings = Settings()
"""The package's settings (see :class:`Settings`)."""
