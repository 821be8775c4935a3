"""AppArmor and SELinux decisions, without a kernel that has either (the host has neither)."""

from __future__ import annotations

from pathlib import Path

import pytest

from crib.errors import FailedPrecondition, InvalidArgument
from crib.proto.cri import api_pb2
from crib.runtime import lsm

Profile = api_pb2.SecurityProfile


class FakeParser:
    def __init__(self, loaded: set[str]) -> None:
        self.loaded = loaded
        self.calls: list[str] = []

    def profiles(self) -> set[str]:
        return set(self.loaded)

    def load(self, text: str) -> None:
        self.calls.append(text)
        self.loaded.add(lsm.DEFAULT_PROFILE)


def _armor(enabled: bool, loaded: set[str] | None = None) -> tuple[lsm.AppArmor, FakeParser]:
    parser = FakeParser(set(loaded or ()))
    return lsm.AppArmor(enabled=enabled, profiles=parser.profiles, load=parser.load), parser


def _sc(**kw: object) -> api_pb2.LinuxContainerSecurityContext:
    return api_pb2.LinuxContainerSecurityContext(**kw)  # type: ignore[arg-type]


def test_the_default_profile_is_loaded_once_and_applied_where_apparmor_runs() -> None:
    armor, parser = _armor(True)
    assert armor.profile_for(_sc()) == lsm.DEFAULT_PROFILE
    assert (
        armor.profile_for(_sc(apparmor=Profile(profile_type=Profile.RuntimeDefault))) == lsm.DEFAULT_PROFILE
    )
    assert armor.profile_for(_sc(apparmor_profile="runtime/default")) == lsm.DEFAULT_PROFILE
    assert len(parser.calls) == 1
    text = parser.calls[0]
    assert f"profile {lsm.DEFAULT_PROFILE} flags=(attach_disconnected,mediate_deleted)" in text
    assert "deny mount," in text and "deny @{PROC}/sysrq-trigger rwklx," in text
    # A profile already in the kernel is not loaded again.
    armor, parser = _armor(True, {lsm.DEFAULT_PROFILE})
    assert armor.profile_for(_sc()) == lsm.DEFAULT_PROFILE and parser.calls == []


def test_privileged_unconfined_and_no_apparmor_mean_no_profile() -> None:
    armor, parser = _armor(True)
    assert armor.profile_for(_sc(privileged=True)) == ""
    assert armor.profile_for(_sc(apparmor=Profile(profile_type=Profile.Unconfined))) == ""
    assert armor.profile_for(_sc(apparmor_profile="unconfined")) == ""
    off, off_parser = _armor(False)
    assert off.profile_for(_sc()) == "" and off.profile_for(_sc(apparmor_profile="runtime/default")) == ""
    assert parser.calls == [] and off_parser.calls == []


def test_a_localhost_profile_must_be_loaded_and_apparmor_on() -> None:
    local = _sc(apparmor=Profile(profile_type=Profile.Localhost, localhost_ref="localhost/mine"))
    armor, _ = _armor(True, {"mine"})
    assert armor.profile_for(local) == "mine"
    assert armor.profile_for(_sc(apparmor_profile="localhost/mine")) == "mine"
    armor, _ = _armor(True, {"other"})
    with pytest.raises(FailedPrecondition, match="'mine' is not loaded"):
        armor.profile_for(local)
    off, _ = _armor(False, {"mine"})
    with pytest.raises(FailedPrecondition, match="AppArmor is not enabled"):
        off.profile_for(local)
    with pytest.raises(FailedPrecondition, match="AppArmor is not enabled"):
        off.check_pod(local.apparmor)
    off.check_pod(Profile(profile_type=Profile.RuntimeDefault))  # nothing to refuse
    with pytest.raises(InvalidArgument, match="not a valid profile"):
        armor.profile_for(_sc(apparmor_profile="bogus"))
    with pytest.raises(InvalidArgument, match="localhost_ref is empty"):
        armor.profile_for(_sc(apparmor=Profile(profile_type=Profile.Localhost)))


def test_loaded_profiles_are_read_from_the_kernel_listing(tmp_path: Path) -> None:
    listing = tmp_path / "profiles"
    listing.write_text("crib-default (enforce)\n/usr/bin/man (complain)\nmy profile (enforce)\n")
    assert lsm.loaded_profiles(listing) == {"crib-default", "/usr/bin/man", "my profile"}
    assert lsm.loaded_profiles(tmp_path / "absent") == set()
    flag = tmp_path / "enabled"
    flag.write_text("Y\n")
    assert lsm.apparmor_enabled(flag) and not lsm.apparmor_enabled(tmp_path / "none")
