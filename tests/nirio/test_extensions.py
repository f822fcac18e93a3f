"""Registration of our extension nodes with nir, and the check of nir's version."""
import nir
import nir.ir
import pytest

from nmc_deploy.errors import NmcDeployError
from nmc_deploy.nirio import (EXTENSION_NODE_TYPES, NirSpikingSelfAttention, NirTokenSelect,
                              NirVersionError, register_extensions)
from nmc_deploy.nirio.extensions import EXTENSIONS, installed_nir_version


def test_one_dict_of_extensions_with_stable_type_names():
    assert EXTENSIONS == {"SpikingSelfAttention": NirSpikingSelfAttention,
                          "TokenSelect": NirTokenSelect}
    assert EXTENSION_NODE_TYPES == ("SpikingSelfAttention", "TokenSelect")


def test_registration_is_idempotent():
    registry = vars(nir.ir)["__all_ir"]
    register_extensions()
    register_extensions()
    for name, cls in EXTENSIONS.items():
        assert registry.count(name) == 1
        assert nir.ir.str2NIRNode(name) is cls


def test_installed_version_is_a_supported_one():
    assert installed_nir_version().startswith("1.0.")


def test_incompatible_nir_is_one_line_naming_both_versions(monkeypatch):
    monkeypatch.setattr(nir, "__version__", "2.3.0")
    monkeypatch.delattr(nir.ir, "__all_ir")
    with pytest.raises(NirVersionError) as info:
        register_extensions()
    text = str(info.value)
    assert isinstance(info.value, NmcDeployError)
    assert "\n" not in text
    assert text.startswith("nir 2.3.0 is installed, but nmc-deploy supports nir 1.0.x")


def test_version_from_package_metadata_when_nir_has_no_attribute(monkeypatch):
    from importlib import metadata

    monkeypatch.delattr(nir, "__version__")
    assert installed_nir_version() == metadata.version("nir")
