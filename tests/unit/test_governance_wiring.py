"""DESIGN invariant 4: the governance facade is wired at startup; asking before raises."""

from __future__ import annotations

import pytest

from runkernel.errors import ConfigurationError
from runkernel.services.governance import (
    GovernanceRegistry,
    IncidentFacade,
    RunGovernanceFacade,
    default_facade,
)


def test_asking_for_the_facade_before_wiring_raises() -> None:
    registry = GovernanceRegistry()
    with pytest.raises(ConfigurationError, match="not wired"):
        _ = registry.facade


def test_the_wired_facade_composes_every_domain() -> None:
    registry = GovernanceRegistry()
    registry.wire(default_facade())
    facade = registry.facade
    assert isinstance(facade, RunGovernanceFacade)
    assert isinstance(facade.incidents, IncidentFacade)
    assert facade.policies is not None and facade.traces is not None
    assert facade.lessons is not None


def test_the_kernel_wires_it(tmp_path: object) -> None:
    from runkernel.bootstrap import build_kernel
    from runkernel.config import Settings

    kernel = build_kernel(Settings(database_url=f"sqlite:///{tmp_path}/k.db"))
    try:
        assert isinstance(kernel.governance.facade, RunGovernanceFacade)
    finally:
        kernel.close()
