"""ModelKit reference parsing with kit's defaults, rules and messages."""

from __future__ import annotations

import pytest
from kitflow.errors import KitflowError
from kitflow.format.reference import (
    Reference,
    ReferenceError,
    check_credentials_scope,
    format_repository_for_display,
    is_digest,
    is_modelkit_reference,
    qualify_reference,
    registry_host,
)

DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


@pytest.mark.parametrize(
    ("text", "registry", "repository", "tag", "digest", "extra"),
    [
        ("testregistry.io/test-organization/test-repository:test-tag",
         "testregistry.io", "test-organization/test-repository", "test-tag", None, ()),
        ("testregistry.io/test-organization/test-repository:test-tag,extraTag1,extraTag2",
         "testregistry.io", "test-organization/test-repository", "test-tag", None,
         ("extraTag1", "extraTag2")),
        ("test-repository:test-tag,extraTag1,extraTag2",
         "localhost", "test-repository", "test-tag", None, ("extraTag1", "extraTag2")),
        ("localhost:5000/test-organization/test-repository:test-tag",
         "localhost:5000", "test-organization/test-repository", "test-tag", None, ()),
        (DIGEST, "localhost", "_", None, DIGEST, ()),
        ("test-organization/test-repository:test-tag",
         "localhost", "test-organization/test-repository", "test-tag", None, ()),
        ("a/b/c/d", "localhost", "a/b/c/d", None, None, ()),
        ("test.io/a/b/c/d", "test.io", "a/b/c/d", None, None, ()),
        (f"testrepo@{DIGEST}", "localhost", "testrepo", None, DIGEST, ()),
        (f"testrepo:ignoredtag@{DIGEST}", "localhost", "testrepo", None, DIGEST, ()),
        (f"testorg/testrepo@{DIGEST}", "localhost", "testorg/testrepo", None, DIGEST, ()),
        (f"testorg.com/testrepo@{DIGEST}", "testorg.com", "testrepo", None, DIGEST, ()),
    ],
)  # fmt: skip
def test_kit_reference_cases(
    text: str,
    registry: str,
    repository: str,
    tag: str | None,
    digest: str | None,
    extra: tuple[str, ...],
) -> None:
    ref = Reference.parse(text)
    assert (ref.registry, ref.repository, ref.tag, ref.digest, ref.extra_tags) == (
        registry,
        repository,
        tag,
        digest,
        extra,
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "repository () must start and end with a letter or number"),
        ("MyRepo:v1", "repository (MyRepo) name must be lowercase"),
        ("repo:bad tag", 'invalid reference: invalid tag "bad tag"'),
        ("repo@sha256:abc", 'invalid reference: invalid digest "sha256:abc": invalid checksum'
         " digest length"),
        ("repo@md5:abc", 'invalid reference: invalid digest "md5:abc": unsupported digest'
         " algorithm"),
        ("my_/repo:v1", 'invalid reference: invalid repository "my_/repo"'),
        ("repo:-x", 'invalid reference: invalid tag "-x"'),
    ],
)  # fmt: skip
def test_refused_references_use_kit_messages(text: str, message: str) -> None:
    with pytest.raises(ReferenceError) as info:
        Reference.parse(text)
    assert str(info.value) == message


def test_properties_and_display() -> None:
    ref = Reference.parse("myorg/model")
    assert ref.name == "localhost/myorg/model"
    assert ref.ref == "latest"
    assert str(ref) == "localhost/myorg/model"
    assert ref.display == "myorg/model"
    tagged = ref.with_tag("v2")
    assert str(tagged) == "localhost/myorg/model:v2" and tagged.display == "myorg/model:v2"
    pinned = ref.with_digest(DIGEST)
    assert pinned.ref == DIGEST and pinned.tag is None and pinned.is_digest
    assert Reference.parse(DIGEST).display == DIGEST
    assert Reference.parse("ghcr.io/org/m:1").display == "ghcr.io/org/m:1"
    assert Reference.parse("model", default_registry="registry.example.com").name == (
        "registry.example.com/model"
    )


def test_display_helper_matches_kit() -> None:
    assert format_repository_for_display("localhost/_@" + DIGEST) == DIGEST
    assert format_repository_for_display("localhost/repo:v1") == "repo:v1"
    assert format_repository_for_display("reg.io/repo") == "reg.io/repo"


def test_modelkit_reference_detection() -> None:
    assert is_modelkit_reference("weights:v1")  # a colon that parses is a reference, as in kit
    assert is_modelkit_reference("ghcr.io/org/model:1.0")
    assert not is_modelkit_reference("models/weights.bin")
    assert not is_modelkit_reference("s3://bucket/key")
    assert not is_modelkit_reference("http://example.com/x")
    assert is_digest(DIGEST) and not is_digest("sha256:123")


def test_a_configured_registry_qualifies_bare_references_only() -> None:
    assert registry_host(" https://ghcr.io/ ") == "ghcr.io"
    assert registry_host("") is None and registry_host(None) is None
    assert qualify_reference("team/kit:v1", "https://ghcr.io/") == "ghcr.io/team/kit:v1"
    assert qualify_reference("quay.io/team/kit:v1", "ghcr.io") == "quay.io/team/kit:v1"
    assert qualify_reference("localhost/kit:v1", "ghcr.io") == "ghcr.io/localhost/kit:v1"
    assert qualify_reference("team/kit:v1", None) == "team/kit:v1"


def test_credentials_go_only_to_their_own_registry() -> None:
    check_credentials_scope("ghcr.io/team/kit:v1", "https://ghcr.io", holder="x")
    check_credentials_scope("quay.io/team/kit:v1", None, holder="x")
    check_credentials_scope("kit:v1", "ghcr.io", holder="x", allow_local=True)
    with pytest.raises(KitflowError, match=r"quay\.io.*holds credentials for ghcr\.io"):
        check_credentials_scope("quay.io/team/kit:v1", "ghcr.io", holder="this block")
    with pytest.raises(KitflowError, match="localhost"):
        check_credentials_scope("kit:v1", "ghcr.io", holder="this block")
