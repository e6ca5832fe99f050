"""The base every firmware-config model derives from: unknown keys are errors, never silently ignored."""

from pydantic import BaseModel, ConfigDict


class ConfigModel(BaseModel):
    """A typo in a field engineer's YAML must fail loudly, naming the key — so `extra="forbid"`."""

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=False)
