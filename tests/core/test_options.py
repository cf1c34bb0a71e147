"""RegistryOptions.from_settings: the orchestrator plugins' plain settings → core options."""

from __future__ import annotations

from pathlib import Path

from kitflow.options import RegistryOptions
from kitflow.secret import Secret


def test_settings_become_options_with_empty_values_unset() -> None:
    options = RegistryOptions.from_settings(
        username="", password="", ca_file="", client_cert=None, concurrency=3
    )
    assert options == RegistryOptions(concurrency=3)
    assert RegistryOptions.from_settings(password=Secret("")).password is None


def test_password_is_a_secret_and_paths_are_paths() -> None:
    options = RegistryOptions.from_settings(
        username="u", password="hunter2", plain_http=True, tls_verify=False, ca_file="/ca.pem"
    )
    assert isinstance(options.password, Secret) and options.password.reveal() == "hunter2"
    assert "hunter2" not in repr(options)
    assert options.ca_file == Path("/ca.pem") and options.plain_http and not options.tls_verify
