"""Every hook a Telemed Bridge plugin can implement, in one flat module.

All hooks are *registration* hooks: they are called once, when the engine (or a CLI command)
builds its plugin tables at start-up, and they return data — lists of the frozen dataclasses in
:mod:`bridge.plugin_types`. The core validates what they return and resolves the callables once,
so nothing here is called per message. Each hook is documented in ``docs/plugins.md``; a test
fails when a hook is added here without documentation there.
"""

from __future__ import annotations

import pluggy

from bridge.plugin_types import (
    CommandSpec,
    ConfigSection,
    DestinationProfile,
    FormatSpec,
    JobType,
    PolicySpec,
    TransportSpec,
    WebBlueprint,
)

hookspec = pluggy.HookspecMarker("bridge")


@hookspec
def bridge_formats() -> list[FormatSpec]:
    """Register message formats (``format:`` on channels and destinations).

    Called once at start-up. Return a list of :class:`~bridge.plugin_types.FormatSpec`; each
    ``name`` must be unique across all plugins.

    Example::

        @hookimpl
        def bridge_formats():
            return [FormatSpec(name="csv-visits", media_type="text/csv",
                               decode=decode_csv, encode=encode_csv, file_extension="csv")]
    """


@hookspec
def bridge_transports() -> list[TransportSpec]:
    """Register transports by URL scheme (``source:`` on channels, ``url:`` on destinations).

    Called once at start-up. Return a list of :class:`~bridge.plugin_types.TransportSpec`, each
    with a source factory, a destination factory, or both. Schemes are unique across plugins.

    Example::

        @hookimpl
        def bridge_transports():
            return [TransportSpec(scheme="sftp", destination=SftpDestination)]
    """


@hookspec
def bridge_destination_profiles() -> list[DestinationProfile]:
    """Register vendor destination profiles (``profile:`` on a destination).

    Called once at start-up. A profile builds the destination itself, so it can own a vendor's
    authentication, write rules and error mapping. Return a list of
    :class:`~bridge.plugin_types.DestinationProfile`.

    Example::

        @hookimpl
        def bridge_destination_profiles():
            return [DestinationProfile(name="acme", make_destination=AcmeDestination, format="fhir")]
    """


@hookspec
def bridge_policies() -> list[PolicySpec]:
    """Register policy gates evaluated on every message before routing.

    Called once at start-up. Each :class:`~bridge.plugin_types.PolicySpec` ``evaluate`` receives a
    :class:`~bridge.plugin_types.PolicyRequest` and returns a
    :class:`~bridge.plugin_types.PolicyDecision`: ALLOW (routed), REVIEW (held for an operator) or
    BLOCK (rejected with reasons). The strictest outcome across policies wins.

    Example::

        @hookimpl
        def bridge_policies():
            return [PolicySpec(name="no-weekend-rx", evaluate=check_weekend)]
    """


@hookspec
def bridge_job_types() -> list[JobType]:
    """Register job types usable in the ``jobs:`` section of the config.

    Called once at start-up. Return a list of :class:`~bridge.plugin_types.JobType`; ``run``
    receives a :class:`~bridge.plugin_types.JobContext` when the schedule fires.

    Example::

        @hookimpl
        def bridge_job_types():
            return [JobType(name="acme-poll", run=poll_acme)]
    """


@hookspec
def bridge_web_blueprints() -> list[WebBlueprint]:
    """Register Flask blueprints to mount in the admin web app.

    Called once when the web app is created. Return a list of
    :class:`~bridge.plugin_types.WebBlueprint` whose ``factory`` builds a fresh blueprint.

    Example::

        @hookimpl
        def bridge_web_blueprints():
            return [WebBlueprint(name="acme", factory=make_acme_blueprint, url_prefix="/acme")]
    """


@hookspec
def bridge_config_sections() -> list[ConfigSection]:
    """Register top-level config sections owned by a plugin (so ``bridge check`` accepts them).

    Called once when a config is validated. ``validate(value)`` returns a list of
    ``(key path, problem)`` pairs, empty when the section is valid.

    Example::

        @hookimpl
        def bridge_config_sections():
            return [ConfigSection(name="acme", validate=validate_acme_settings)]
    """


@hookspec
def bridge_commands() -> list[CommandSpec]:
    """Register ``bridge`` sub-commands (e.g. ``bridge send`` for MLLP).

    Called once when the command line is parsed. Return a list of
    :class:`~bridge.plugin_types.CommandSpec`; names must not clash with built-in commands or
    other plugins' commands.

    Example::

        @hookimpl
        def bridge_commands():
            return [CommandSpec(name="acme-ping", help="check the Acme endpoint",
                                configure=lambda p: p.add_argument("url"), run=ping)]
    """
