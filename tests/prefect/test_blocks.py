"""The two blocks: Prefect's block standards, the entry point, conversion to core options, and
secrets that stay hidden when saved, loaded, printed or dumped."""

from __future__ import annotations

from importlib.metadata import entry_points
from pathlib import Path

import pytest
from kitflow.errors import KitflowError
from kitflow.secret import Secret
from prefect.blocks.core import Block
from prefect.testing.standard_test_suites import BlockStandardTestSuite
from prefect_kitflow import ArgoServer, KitRegistryCredentials

SECRET = "pw-never-shown-7f3a"
TOKEN = "tok-never-shown-91cc"


@pytest.mark.parametrize("block", [KitRegistryCredentials, ArgoServer])
class TestBlockStandards(BlockStandardTestSuite):
    """Prefect's own checks for a publishable block (description, docs URL, field docs, example)."""

    @pytest.fixture
    def block(self, block: type[Block]) -> type[Block]:
        return block

    def test_has_a_valid_image(self, block: type[Block]) -> None:
        # The suite's version downloads the logo with Pillow; offline we check it is an https URL
        # of a square GitHub avatar instead.
        assert block._logo_url is not None
        assert str(block._logo_url).startswith("https://github.com/")
        assert str(block._logo_url).endswith(".png")


def test_entry_point_names_the_package() -> None:
    found = [ep for ep in entry_points(group="prefect.collections") if ep.name == "prefect_kitflow"]
    assert [ep.value for ep in found] == ["prefect_kitflow"]
    module = found[0].load()
    assert module.KitRegistryCredentials is KitRegistryCredentials


def test_blocks_are_found_by_slug() -> None:
    assert Block.get_block_class_from_key("kit-registry-credentials") is KitRegistryCredentials
    assert Block.get_block_class_from_key("kitflow-argo-server") is ArgoServer


def test_registry_credentials_to_options(tmp_path: Path) -> None:
    block = KitRegistryCredentials(
        registry="registry.example.com:5000",
        username="alice",
        password=SECRET,
        plain_http=True,
        tls_verify=False,
        ca_file=str(tmp_path / "ca.pem"),
        concurrency=3,
    )
    options = block.options_for("registry.example.com:5000/team/sentiment:v1")
    assert options.username == "alice"
    assert options.password == Secret(SECRET)
    assert options.plain_http and not options.tls_verify
    assert options.ca_file == tmp_path / "ca.pem"
    assert options.concurrency == 3
    assert block.get_client() == options


def test_registry_credentials_refuse_another_registry() -> None:
    block = KitRegistryCredentials(registry="ghcr.io", username="alice", password=SECRET)
    with pytest.raises(KitflowError, match=r"ghcr\.io") as info:
        block.options_for("quay.io/team/sentiment:v1")
    assert SECRET not in str(info.value)


def test_registry_credentials_without_registry_apply_anywhere() -> None:
    block = KitRegistryCredentials(username="alice", password=SECRET)
    assert block.options_for("quay.io/team/sentiment:v1").username == "alice"


def test_argo_server_to_options() -> None:
    block = ArgoServer(
        server="https://argo.example.com:2746",
        token=TOKEN,
        namespace="ml",
        insecure_skip_verify=True,
        image="example.com/runtime:1",
    )
    options = block.get_options()
    assert options.server == "https://argo.example.com:2746"
    assert options.token == Secret(TOKEN)
    assert options.namespace == "ml"
    assert options.insecure_skip_verify
    assert options.image == "example.com/runtime:1"


def test_argo_server_with_kubeconfig(tmp_path: Path) -> None:
    options = ArgoServer(kubeconfig=str(tmp_path / "config"), namespace="ml").get_options()
    assert options.server is None
    assert options.kubeconfig == tmp_path / "config"


def test_argo_server_needs_an_address() -> None:
    with pytest.raises(KitflowError, match="server address or a kubeconfig"):
        ArgoServer().get_options()


def test_secrets_hidden_in_repr_dump_and_storage() -> None:
    creds = KitRegistryCredentials(username="alice", password=SECRET)
    argo = ArgoServer(server="argo:2746", token=TOKEN)
    for block, secret in ((creds, SECRET), (argo, TOKEN)):
        assert secret not in repr(block)
        assert secret not in str(block)
        assert secret not in block.model_dump_json()
        assert secret not in repr(block.get_options())


def test_saved_blocks_round_trip_and_obfuscate() -> None:
    KitRegistryCredentials(username="alice", password=SECRET).save("kit-creds-rt", overwrite=True)
    ArgoServer(server="argo:2746", token=TOKEN).save("argo-rt", overwrite=True)
    creds = KitRegistryCredentials.load("kit-creds-rt")
    argo = ArgoServer.load("argo-rt")
    assert creds.get_options().password == Secret(SECRET)
    assert argo.get_options().token == Secret(TOKEN)

    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        doc = client.read_block_document_by_name(
            "kit-creds-rt", "kit-registry-credentials", include_secrets=False
        )
    # What the API hands out without asking for secrets (the UI's view) is obfuscated.
    assert SECRET not in str(doc.data)
    assert doc.block_schema is not None
    assert doc.block_schema.fields["secret_fields"] == ["password"]
