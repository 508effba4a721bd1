"""Restricted unpicklers for NVIDIA's StyleGAN2 pickles: nothing in a weights file is executed.

A pickle can call any importable function it names, and NVIDIA's own loaders go further: TF
``Network.__setstate__`` and ada's ``_reconstruct_persistent_obj`` ``exec()`` Python source stored
in the file. Here every global a pickle asks for is looked up in an allow-list of inert
replacements (spec section 3.2 and 4.2); anything else raises a WeightsError naming it.
"""

from __future__ import annotations

import collections
import io
import pickle
from pathlib import Path
from typing import Any, BinaryIO

from essence import WeightsError


class TFNetworkStub:
    """Stands in for ``dnnlib.tflib.network.Network``. Without a ``__setstate__``, pickle copies the saved
    state (``variables``, ``components``, ``static_kwargs``, ...) into the instance ``__dict__``."""

    variables: list[tuple[str, Any]]
    components: dict[str, TFNetworkStub]

    def all_variables(self, prefix: str = "") -> dict[str, Any]:
        """Own variables, then each component's under ``<component>/``, as NVIDIA's legacy loader gathers them."""
        found = {prefix + name: value for name, value in getattr(self, "variables", [])}
        for key, comp in getattr(self, "components", {}).items():
            if not isinstance(comp, TFNetworkStub):
                raise WeightsError(f"TF network component {key!r} is not a network.")
            found.update(comp.all_variables(f"{prefix}{key}/"))
        return found


class EasyDictStub(dict):
    """Stands in for ``dnnlib.util.EasyDict``: a plain dict (instances may carry a ``__dict__``)."""


class PersistentRecord:
    """What an ada/SG3 ``persistent_class`` object reduces to, kept as data. The module source it
    carries (``module_src``) is never executed; only ``state`` (the module's ``__dict__``) is read."""

    def __init__(self, meta: dict[str, Any]):
        self.class_name: str = meta.get("class_name", "?")
        self.state: dict[str, Any] = meta.get("state") or {}

    def tensors(self, prefix: str = "") -> dict[str, Any]:
        """The state dict ``torch.nn.Module.state_dict()`` would give: parameters, persistent buffers, children."""
        import torch

        out: dict[str, Any] = {}
        skip = set(self.state.get("_non_persistent_buffers_set") or ())
        for group in ("_parameters", "_buffers"):
            for name, value in (self.state.get(group) or {}).items():
                if value is None or (group == "_buffers" and name in skip):
                    continue
                if not isinstance(value, torch.Tensor):
                    raise WeightsError(f"{prefix}{name} is a {type(value).__name__}, not a tensor.")
                out[prefix + name] = value
        for name, child in (self.state.get("_modules") or {}).items():
            if child is None:
                continue
            if not isinstance(child, PersistentRecord):
                raise WeightsError(f"Submodule {prefix}{name} is a {type(child).__name__}, not a network layer.")
            out.update(child.tensors(f"{prefix}{name}."))
        return out

    def records(self, prefix: str = "") -> dict[str, PersistentRecord]:
        """This record and every descendant, by dotted path ('' for this one)."""
        out = {prefix.rstrip("."): self}
        for name, child in (self.state.get("_modules") or {}).items():
            if isinstance(child, PersistentRecord):
                out.update(child.records(f"{prefix}{name}."))
        return out


def _reconstruct_persistent_obj(meta: Any) -> PersistentRecord:
    if not isinstance(meta, dict) or meta.get("type") != "class":
        raise WeightsError("The pickle holds a persistent object of an unknown kind (expected type 'class').")
    if meta.get("version") != 6:
        raise WeightsError(
            f"The pickle uses persistence format version {meta.get('version')!r}; only version 6 "
            "(stylegan2-ada-pytorch, stylegan3) is supported."
        )
    return PersistentRecord(meta)


def _load_storage(data: bytes) -> Any:
    import torch

    if not isinstance(data, bytes):
        raise WeightsError("A tensor storage in the pickle is not raw bytes.")
    return torch.load(io.BytesIO(data), weights_only=True, map_location="cpu")


def _rebuild_tensor(storage: Any, offset: int, size: tuple, stride: tuple, *_ignored: Any) -> Any:
    """A plain tensor on ``storage`` (requires_grad and backward hooks from the file are dropped)."""
    import torch

    if not isinstance(storage, (torch.TypedStorage, torch.UntypedStorage)):
        raise WeightsError("A tensor in the pickle does not point to a tensor storage.")
    return torch._utils._rebuild_tensor(storage, offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, *_ignored: Any) -> Any:
    import torch

    if not isinstance(data, torch.Tensor):
        raise WeightsError("A parameter in the pickle does not hold a tensor.")
    return data


def _numpy_globals() -> dict[tuple[str, str], Any]:
    import numpy as np

    try:
        multiarray = np._core.multiarray  # numpy >= 2
    except AttributeError:  # pragma: no cover - numpy 1.x
        multiarray = np.core.multiarray
    found = {}
    for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
        found[(module, "_reconstruct")] = multiarray._reconstruct
        found[(module, "scalar")] = multiarray.scalar
    found[("numpy", "ndarray")] = np.ndarray
    found[("numpy", "dtype")] = np.dtype
    return found


def tf_globals() -> dict[tuple[str, str], Any]:
    """NVIDIA's TensorFlow pickles: the Network stub and numpy array reconstruction."""
    return {("dnnlib.tflib.network", "Network"): TFNetworkStub, **_numpy_globals()}


def ada_globals() -> dict[tuple[str, str], Any]:
    """stylegan2-ada-pytorch / stylegan3 pickles: persistent records, tensors, numpy scalars."""
    import torch  # noqa: F401  (the replacements use it)

    numpy = {k: v for k, v in _numpy_globals().items() if k[1] in ("scalar", "dtype")}
    return {
        ("torch_utils.persistence", "_reconstruct_persistent_obj"): _reconstruct_persistent_obj,
        ("torch.storage", "_load_from_bytes"): _load_storage,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("dnnlib.util", "EasyDict"): EasyDictStub,
        # Protocol 2/3 pickles (ada wrote protocol 3 under Python 3.7) spell a set as builtins.set(list).
        ("builtins", "set"): set,
        **numpy,
    }


class RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO, allowed: dict[tuple[str, str], Any], what: str):
        super().__init__(file)
        self.allowed = allowed
        self.what = what

    def find_class(self, module: str, name: str) -> Any:
        try:
            return self.allowed[(module, name)]
        except KeyError:
            raise WeightsError(
                f"Refusing to load {self.what}: the pickle asks for {module}.{name}, which is not part of a "
                "StyleGAN2 checkpoint. Nothing from the file was executed. If this file is genuine, "
                "convert it with NVIDIA's own tools in a sandbox and load the result."
            ) from None

    def persistent_load(self, pid: Any) -> Any:
        raise WeightsError(f"Refusing to load {self.what}: it uses pickle persistent ids (not a known format).")


def restricted_load(path: Path, allowed: dict[tuple[str, str], Any]) -> Any:
    with open(path, "rb") as f:
        return RestrictedUnpickler(f, allowed, str(path)).load()
